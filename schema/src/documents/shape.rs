//! The shape check: what a project document may hold.

use std::collections::{BTreeSet, HashMap};

use loro::{
    Container, ContainerID, ContainerType, Index, JsonMapOp, JsonOpContent, LoroDoc,
    ValueOrContainer, VersionVector,
};

use super::limits::{CollabConfig, check_path};
use crate::error::{ApiError, ApiResult};

/// The root map of every document: path -> LoroText.
pub const FILES: &str = "files";

/// Whether what changed in `doc` since `before` keeps it a project document: only the root
/// map `files` and the texts in it, valid paths, texts only, within the size limits.
///
/// It costs what the change touches, not the whole project: the operations since `before`
/// name the files they changed (a key of `files`, or a text inside it), and only those are
/// checked.
pub fn check_shape(doc: &LoroDoc, before: &VersionVector, config: &CollabConfig) -> ApiResult<()> {
    let refuse = |message: String| Err(ApiError::bad_input("update", message));
    let files = doc.get_map(FILES);
    if files.len() > config.max_files {
        return refuse(format!(
            "a project holds at most {} files",
            config.max_files
        ));
    }
    for path in touched_files(doc, before)? {
        check_path("update", &path)?;
        match files.get(&path) {
            Some(ValueOrContainer::Container(Container::Text(text)))
                if text.len_utf8() > config.max_file_bytes =>
            {
                return refuse(format!(
                    "{path} would be larger than {} bytes",
                    config.max_file_bytes
                ));
            }
            // A text within the limit, or a file the change deleted.
            Some(ValueOrContainer::Container(Container::Text(_))) | None => {}
            Some(_) => return refuse(format!("files/{path} must be a text")),
        }
    }
    Ok(())
}

/// The paths of the files the operations since `before` changed. Every operation must be on
/// the root map `files` or inside it: a document's value alone cannot tell (a root text named
/// `files` shares the map's key there), so each container is located from the root.
fn touched_files(doc: &LoroDoc, before: &VersionVector) -> ApiResult<BTreeSet<String>> {
    let files = ContainerID::new_root(FILES, ContainerType::Map);
    // Without peer compression: compressed ids name peers by index, not by their real ids.
    let changes = doc
        .export_json_updates_without_peer_compression(before, &doc.oplog_vv())
        .map_err(ApiError::internal)?;
    let mut paths = BTreeSet::new();
    // Where each container other than `files` is, looked up once however many ops it has.
    let mut located: HashMap<ContainerID, Option<String>> = HashMap::new();
    for op in changes.changes.iter().flat_map(|change| &change.ops) {
        if op.container == files {
            match &op.content {
                JsonOpContent::Map(JsonMapOp::Insert { key, .. } | JsonMapOp::Delete { key }) => {
                    paths.insert(key.clone());
                }
                _ => return Err(outside(&op.container)),
            }
            continue;
        }
        // Mergeable children (`ensure_mergeable_text`) have root ids of their own; the path
        // from the document's root tells where any container really is.
        let path = located
            .entry(op.container.clone())
            .or_insert_with(|| file_of(doc, &files, &op.container));
        match path {
            Some(path) => {
                paths.insert(path.clone());
            }
            None => return Err(outside(&op.container)),
        }
    }
    Ok(paths)
}

/// The file (the key of `files`) that `container` is, or is inside of.
fn file_of(doc: &LoroDoc, files: &ContainerID, container: &ContainerID) -> Option<String> {
    let path = doc.get_path_to_container(container)?;
    match path.as_slice() {
        [(root, _), (_, Index::Key(key)), ..] if root == files => Some(key.to_string()),
        _ => None,
    }
}

fn outside(container: &ContainerID) -> ApiError {
    ApiError::bad_input(
        "update",
        format!(
            "only the root map `files` may be used, not {}",
            describe_container(container)
        ),
    )
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
