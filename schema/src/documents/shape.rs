//! The shape check: what a project document may hold.

use loro::{Container, ContainerID, ContainerType, LoroDoc, ValueOrContainer, VersionVector};

use super::limits::{CollabConfig, check_path};
use crate::error::{ApiError, ApiResult};

/// The root map of every document: path -> LoroText.
pub const FILES: &str = "files";

/// Whether what changed in `doc` since `before` keeps it a project document: only the root
/// map `files` (see [`check_roots`]), valid paths, texts only, within the size limits.
pub fn check_shape(doc: &LoroDoc, before: &VersionVector, config: &CollabConfig) -> ApiResult<()> {
    let refuse = |message: String| Err(ApiError::bad_input("update", message));
    check_roots(doc, before)?;
    let files = doc.get_map(FILES);
    if files.len() > config.max_files {
        return refuse(format!(
            "a project holds at most {} files",
            config.max_files
        ));
    }
    let mut problem = None;
    files.for_each(|path, value| {
        if problem.is_some() {
            return;
        }
        if let Err(error) = check_path("update", path) {
            problem = Some(error);
            return;
        }
        match value {
            ValueOrContainer::Container(Container::Text(text)) => {
                if text.len_utf8() > config.max_file_bytes {
                    problem = Some(ApiError::bad_input(
                        "update",
                        format!(
                            "{path} would be larger than {} bytes",
                            config.max_file_bytes
                        ),
                    ));
                }
            }
            _ => {
                problem = Some(ApiError::bad_input(
                    "update",
                    format!("files/{path} must be a text"),
                ));
            }
        }
    });
    problem.map_or(Ok(()), Err)
}

/// Every operation since `before` must be on the root map `files` or inside it. A document's
/// value alone cannot tell: a root text named `files` shares the map's key there.
fn check_roots(doc: &LoroDoc, before: &VersionVector) -> ApiResult<()> {
    let files = ContainerID::new_root(FILES, ContainerType::Map);
    // Without peer compression: compressed ids name peers by index, not by their real ids.
    let changes = doc
        .export_json_updates_without_peer_compression(before, &doc.oplog_vv())
        .map_err(ApiError::internal)?;
    for op in changes.changes.iter().flat_map(|change| &change.ops) {
        // Mergeable children (`ensure_mergeable_text`) have root ids of their own; the path
        // from the document's root tells where any container really is.
        let inside_files = op.container == files
            || doc
                .get_path_to_container(&op.container)
                .and_then(|path| path.first().map(|(root, _)| *root == files))
                .unwrap_or(false);
        if !inside_files {
            return Err(ApiError::bad_input(
                "update",
                format!(
                    "only the root map `files` may be used, not {}",
                    describe_container(&op.container)
                ),
            ));
        }
    }
    Ok(())
}

fn describe_container(id: &ContainerID) -> String {
    match id {
        ContainerID::Root {
            name,
            container_type,
        } if !id.is_mergeable() => {
            format!(
                "the root {} `{name}`",
                format!("{container_type:?}").to_lowercase()
            )
        }
        _ => "a container outside it".to_owned(),
    }
}
