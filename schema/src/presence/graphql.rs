//! GraphQL types and resolvers of presence.

use crate::context::ServicesExt;
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use uuid::Uuid;

use super::service::{self, Snapshot};
use crate::context::ViewerExt;
use crate::error::{ApiError, ApiResult};
use crate::loaders::load_user;
use crate::projects::revocation::Revocation;
use crate::realtime::PresenceState;
use crate::time::now;
use crate::users::User;
use crate::validation;

/// A selected range of a file, as offsets into its text.
#[derive(SimpleObject, Clone, Copy)]
pub struct Selection {
    /// Where the selection started (it stays put while the selection is extended).
    pub anchor: u32,
    /// Where it ends: the end that moves, where the cursor is.
    pub head: u32,
}

/// A selected range of a file, as offsets into its text (0 or more).
#[derive(InputObject)]
pub struct SelectionInput {
    /// Where the selection started.
    pub anchor: i32,
    /// Where it ends (the end that moves).
    pub head: i32,
}

/// One connected client of a member in a project: which file it shows and where its
/// cursor is.
pub struct PresenceEntry(PresenceState);

/// One connected client of a member in a project: which file it shows and where its
/// cursor is.
#[Object]
impl PresenceEntry {
    /// The member.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.user).await
    }
    /// The client's own id (one per editor tab), as it sent it to `updatePresence`.
    async fn client_id(&self) -> &str {
        &self.0.client_id
    }
    /// The path of the file the client shows, if any.
    async fn file(&self) -> Option<&str> {
        self.0.file.as_deref()
    }
    /// The cursor's offset in `file`, if known.
    async fn cursor(&self) -> Option<u32> {
        self.0.cursor
    }
    /// The selected range in `file`, if any.
    async fn selection(&self) -> Option<Selection> {
        self.0
            .selection
            .map(|(anchor, head)| Selection { anchor, head })
    }
    /// Whether the member is typing.
    async fn typing(&self) -> bool {
        self.0.typing
    }
    /// A colour for this member's cursor and avatar, `#rrggbb`: derived from the user id,
    /// so every client shows the same colour for the same person.
    async fn color(&self) -> String {
        color_of(self.0.user)
    }
    /// When the client's file, cursor, selection or typing state last changed (heartbeats
    /// with the same values do not move it).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

/// A well-spread, saturated colour from a user id: the hue comes from a hash of the id.
pub fn color_of(user: Uuid) -> String {
    // FNV-1a: stable across builds and platforms, unlike the standard library's hasher.
    let hash = user
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let hue = (hash % 360) as f64;
    let (saturation, lightness) = (0.65, 0.5);
    // HSL to RGB.
    let chroma = (1.0 - (2.0 * lightness - 1.0_f64).abs()) * saturation;
    let h = hue / 60.0;
    let x = chroma * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = lightness - chroma / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", byte(r), byte(g), byte(b))
}

fn offset(field: &'static str, value: i32) -> ApiResult<u32> {
    u32::try_from(value)
        .map_err(|_| ApiError::bad_input(field, format!("{field} must not be negative")))
}

#[derive(Default)]
pub struct PresenceMutation;

#[Object]
impl PresenceMutation {
    /// Say where this client is in a project: which file it shows, its cursor, its selection,
    /// whether its member is typing. Members of any role. Everyone watching `presence` sees
    /// it. Sending the same values again is a heartbeat: send one well within the server's
    /// presence TTL (30 s by default) or the client is taken off the list.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn update_presence(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The client's own id, one per editor tab (1–64 bytes).")]
        client_id: String,
        #[graphql(desc = "The path of the file the client shows.")] file: Option<String>,
        #[graphql(desc = "The cursor's offset in `file` (needs `file`).")] cursor: Option<i32>,
        #[graphql(desc = "The selected range in `file` (needs `file`).")] selection: Option<
            SelectionInput,
        >,
        #[graphql(
            default_with = "Some(false)",
            desc = "Whether the member is typing (null counts as false)."
        )]
        typing: Option<bool>,
    ) -> Result<bool> {
        let viewer = ctx.viewer().require()?;
        let project = validation::id("projectId", &project_id)?;
        let cursor = cursor.map(|c| offset("cursor", c)).transpose()?;
        let selection = selection
            .map(|s| -> ApiResult<(u32, u32)> {
                Ok((
                    offset("selection.anchor", s.anchor)?,
                    offset("selection.head", s.head)?,
                ))
            })
            .transpose()?;
        let services = ctx.services()?;
        service::share(
            &services.db,
            &services.presence,
            viewer,
            project,
            PresenceState {
                user: viewer.id,
                client_id,
                file,
                cursor,
                selection,
                typing: typing.unwrap_or(false),
                at: now(),
            },
        )
        .await?;
        Ok(true)
    }
}

#[derive(Default)]
pub struct PresenceSubscription;

#[Subscription]
impl PresenceSubscription {
    /// Who is in a project right now: first the current list, then the whole list again
    /// each time somebody arrives, moves, starts or stops typing, or leaves (heartbeats
    /// change nothing). Needs read access. Give `clientId` (the one this client sends to
    /// `updatePresence`) and the client leaves the list as soon as this subscription ends or
    /// its WebSocket closes. Ends with FORBIDDEN when the viewer loses access.
    async fn presence(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(
            desc = "This client's id (as sent to `updatePresence`): it leaves the list when the subscription ends."
        )]
        client_id: Option<String>,
    ) -> Result<impl Stream<Item = Result<Vec<PresenceEntry>>> + use<>> {
        let project = validation::id("projectId", &project_id)?;
        let services = ctx.services()?.clone();
        let viewer = ctx.viewer().user()?.cloned();
        let mut revocation =
            Revocation::watch(&services.bus, services.db.clone(), project, viewer.clone());
        let (mut snapshots, guard) = service::follow(
            &services.db,
            &services.presence,
            viewer.as_ref(),
            project,
            client_id,
        )
        .await?;
        let stream = async_stream::stream! {
            // Dropped with the stream: a closed socket or a completed subscription.
            let _guard = guard;
            let first = snapshots.borrow_and_update().clone();
            yield Ok(entries(&first));
            loop {
                tokio::select! {
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let snapshot = snapshots.borrow_and_update().clone();
                        yield Ok(entries(&snapshot));
                    }
                    error = revocation.revoked() => {
                        yield Err(error.into());
                        break;
                    }
                }
            }
        };
        Ok(crate::context::budgeted(ctx, stream)?)
    }
}

fn entries(snapshot: &Snapshot) -> Vec<PresenceEntry> {
    snapshot.iter().cloned().map(PresenceEntry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_are_stable_and_valid() {
        let user = Uuid::new_v4();
        let color = color_of(user);
        assert_eq!(color, color_of(user));
        assert_eq!(color.len(), 7);
        assert!(color.starts_with('#'));
        assert!(color[1..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(color_of(Uuid::nil()), color_of(Uuid::nil()));
        let distinct: std::collections::HashSet<String> =
            (0..50).map(|_| color_of(Uuid::new_v4())).collect();
        assert!(distinct.len() > 10);
    }
}
