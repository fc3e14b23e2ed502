//! Invite links: create, accept, list, revoke, expire.

use codecrafter_tests::backend_tests;
use serde_json::json;

const CREATE: &str = "mutation($p: ID!, $r: ProjectRole!, $h: Int) { createInvite(projectId: $p, role: $r, expiresInHours: $h) { token invite { id role uses revoked expiresAt createdBy { username } } } }";
const ACCEPT: &str = "mutation($t: String!) { acceptInvite(token: $t) { id title viewerRole } }";
const LIST: &str = "query($p: ID!) { invites(projectId: $p) { id uses } }";

backend_tests! {
    async fn an_invite_lets_people_join_with_its_role(app) {
        let owner = app.sign_up("owner").await;
        let guest = app.sign_up("guest").await;
        let editor = app.sign_up("editor").await;
        let project = app.create_project(&owner, "Private", false).await;
        app.add_member(&owner, &project, &editor, "EDITOR").await;
        let created = app.gql_as(&owner.access, CREATE, json!({ "p": project, "r": "EDITOR", "h": 24 })).await;
        let created = created.data()["createInvite"].clone();
        let token = created["token"].as_str().unwrap().to_owned();
        assert_eq!(created["invite"]["role"], "EDITOR");
        assert_eq!(created["invite"]["createdBy"]["username"], "owner");
        assert!(created["invite"]["expiresAt"].is_string());
        // Only owners invite, and not as OWNER; the lifetime is bounded.
        app.gql_as(&editor.access, CREATE, json!({ "p": project, "r": "VIEWER" })).await.assert_error("FORBIDDEN", None);
        app.gql_as(&guest.access, CREATE, json!({ "p": project, "r": "VIEWER" })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&owner.access, CREATE, json!({ "p": project, "r": "OWNER" })).await.assert_error("BAD_USER_INPUT", Some("role"));
        app.gql_as(&owner.access, CREATE, json!({ "p": project, "r": "VIEWER", "h": 0 })).await.assert_error("BAD_USER_INPUT", Some("expiresInHours"));
        assert_eq!(app.count("invites").await, 1);

        app.gql(ACCEPT, json!({ "t": token })).await.assert_error("UNAUTHENTICATED", None);
        let joined = app.gql_as(&guest.access, ACCEPT, json!({ "t": token })).await;
        assert_eq!(joined.data()["acceptInvite"]["viewerRole"], "EDITOR");
        assert_eq!(joined.data()["acceptInvite"]["title"], "Private");
        // Accepting again, or as a member already, changes nothing.
        let again = app.gql_as(&guest.access, ACCEPT, json!({ "t": token })).await;
        assert_eq!(again.data()["acceptInvite"]["viewerRole"], "EDITOR");
        let owner_again = app.gql_as(&owner.access, ACCEPT, json!({ "t": token })).await;
        assert_eq!(owner_again.data()["acceptInvite"]["viewerRole"], "OWNER");
        let listed = app.gql_as(&owner.access, LIST, json!({ "p": project })).await;
        assert_eq!(listed.data()["invites"][0]["uses"], 1);
        app.gql_as(&guest.access, "mutation($t: String!) { acceptInvite(token: $t) { id } }", json!({ "t": "no-such-token" }))
            .await
            .assert_error("NOT_FOUND", None);
    }

    async fn revoked_and_expired_invites_stop_working(app) {
        let owner = app.sign_up("owner").await;
        let guest = app.sign_up("guest").await;
        let project = app.create_project(&owner, "Private", false).await;
        let first = app.gql_as(&owner.access, CREATE, json!({ "p": project, "r": "VIEWER" })).await.data()["createInvite"].clone();
        let second = app.gql_as(&owner.access, CREATE, json!({ "p": project, "r": "VIEWER", "h": 1 })).await.data()["createInvite"].clone();
        const REVOKE: &str = "mutation($id: ID!) { revokeInvite(id: $id) { revoked } }";
        app.gql_as(&guest.access, REVOKE, json!({ "id": first["invite"]["id"] })).await.assert_error("NOT_FOUND", None);
        let revoked = app.gql_as(&owner.access, REVOKE, json!({ "id": first["invite"]["id"] })).await;
        assert_eq!(revoked.data()["revokeInvite"]["revoked"], true);
        app.gql_as(&guest.access, ACCEPT, json!({ "t": first["token"] })).await.assert_error("NOT_FOUND", None);
        // Expire the second one, as time would.
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let id = uuid::Uuid::parse_str(second["invite"]["id"].as_str().unwrap()).unwrap();
        let past = chrono::Utc::now() - chrono::Duration::hours(2);
        let expired = entity::invite::Entity::update_many()
            .col_expr(entity::invite::Column::ExpiresAt, Expr::value(past))
            .filter(entity::invite::Column::Id.eq(id))
            .exec(&app.db)
            .await
            .unwrap();
        assert_eq!(expired.rows_affected, 1);
        app.gql_as(&guest.access, ACCEPT, json!({ "t": second["token"] })).await.assert_error("NOT_FOUND", None);
        assert_eq!(app.count("project_members").await, 1);
        let listed = app.gql_as(&owner.access, LIST, json!({ "p": project })).await;
        assert_eq!(listed.data()["invites"], json!([]));
    }
}
