//! The projects, documents and runs services against a real, migrated SQLite database (and,
//! for runs, a real apalis queue on SQLite), without HTTP or GraphQL: what each operation
//! stores, refuses and answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use entity::project::Language;
use entity::project_member::ProjectRole;
use entity::run::RunStatus;
use entity::user::{self, UserRole};
use migration::{Migrator, MigratorTrait};
use schema::context::{AuthUser, Viewer};
use schema::documents::{self, CollabConfig, Documents, service as files};
use schema::error::{ApiError, ApiResult};
use schema::projects::service::{self as projects, NewProject, ProjectListFilter};
use schema::realtime::{Bus, RunSignal};
use schema::runs::service::{self as runs, RunRequest};
use schema::runs::{RunLimits, RunsConfig};
use schema::state::Runs;
use sea_orm::{
    ActiveModelTrait, ConnectOptions, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    Set,
};
use uuid::Uuid;

/// A fresh in-memory database, migrated (one connection: the memory is the connection's).
async fn database() -> DatabaseConnection {
    let mut options = ConnectOptions::new("sqlite::memory:");
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .sqlx_logging(false);
    let db = Database::connect(options).await.expect("SQLite opens");
    Migrator::up(&db, None).await.expect("migrations run");
    db
}

fn collab() -> CollabConfig {
    CollabConfig {
        max_update_bytes: 1024 * 1024,
        max_file_bytes: 1024,
        max_files: 100,
        compact_after_updates: 500,
        idle_unload: Duration::from_secs(3600),
        autosave_idle: Duration::from_secs(3600),
        presence_ttl: Duration::from_secs(30),
        subscriber_queue: 512,
    }
}

struct World {
    db: DatabaseConnection,
    bus: Arc<Bus>,
    documents: Documents,
}

async fn world() -> World {
    let db = database().await;
    let bus = Bus::local();
    let documents = Documents::start(db.clone(), bus.clone(), collab());
    World { db, bus, documents }
}

async fn user(db: &DatabaseConnection, name: &str) -> AuthUser {
    let id = Uuid::new_v4();
    let at = chrono::Utc::now();
    user::ActiveModel {
        id: Set(id),
        username: Set(name.into()),
        email: Set(format!("{name}@example.com")),
        display_name: Set(name.into()),
        password_hash: Set("x".into()),
        role: Set(UserRole::User),
        preferences: Set(serde_json::json!({})),
        active: Set(true),
        created_at: Set(at),
        updated_at: Set(at),
        last_login_at: Set(None),
    }
    .insert(db)
    .await
    .expect("user inserted");
    AuthUser {
        id,
        role: UserRole::User,
        session_id: Uuid::new_v4(),
        expires_at: i64::MAX,
    }
}

async fn project(db: &DatabaseConnection, owner: &AuthUser, title: &str, public: bool) -> Uuid {
    projects::create(
        db,
        owner,
        NewProject {
            title: title.into(),
            description: None,
            default_language: Language::Python,
            is_public: public,
        },
    )
    .await
    .expect("project created")
    .project
    .id
}

fn code<T>(result: ApiResult<T>) -> &'static str {
    result.err().map_or("OK", |error| error.code())
}

async fn paths(w: &World, owner: &AuthUser, project: Uuid) -> Vec<String> {
    files::files(&w.db, &w.documents, Some(owner), project)
        .await
        .expect("files read")
        .into_iter()
        .map(|file| file.path)
        .collect()
}

#[tokio::test]
async fn projects_page_newest_first_and_hide_private_ones() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let bob = user(&w.db, "bob").await;
    let mut ids = Vec::new();
    for title in ["one", "two", "three"] {
        ids.push(project(&w.db, &ann, title, true).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let private = project(&w.db, &ann, "secret", false).await;

    let ann_viewer = Viewer::User(ann.clone());
    let bob_viewer = Viewer::User(bob.clone());
    let first = projects::list(&w.db, &bob_viewer, ProjectListFilter::default(), 2, None)
        .await
        .expect("first page");
    let titles: Vec<&str> = first
        .projects
        .iter()
        .map(|(_, p)| p.project.title.as_str())
        .collect();
    assert_eq!(titles, ["three", "two"]);
    assert!(first.has_next_page && !first.has_previous_page);
    assert_eq!(first.total_count, 3, "bob does not see the private project");
    let after = first.projects.last().map(|(cursor, _)| cursor.clone());
    let second = projects::list(
        &w.db,
        &bob_viewer,
        ProjectListFilter::default(),
        2,
        after.as_deref(),
    )
    .await
    .expect("second page");
    let titles: Vec<&str> = second
        .projects
        .iter()
        .map(|(_, p)| p.project.title.as_str())
        .collect();
    assert_eq!(titles, ["one"]);
    assert!(!second.has_next_page && second.has_previous_page);
    let bad = projects::list(
        &w.db,
        &bob_viewer,
        ProjectListFilter::default(),
        2,
        Some("nope"),
    )
    .await;
    assert_eq!(code(bad), "BAD_USER_INPUT");

    let mine = projects::list(&w.db, &ann_viewer, ProjectListFilter::default(), 10, None)
        .await
        .expect("ann's list");
    assert_eq!(mine.total_count, 4);
    assert_eq!(
        code(projects::get(&w.db, &bob_viewer, private).await),
        "NOT_FOUND"
    );
    assert_eq!(
        projects::get(&w.db, &ann_viewer, private)
            .await
            .expect("owner reads")
            .role,
        Some(ProjectRole::Owner)
    );
}

#[tokio::test]
async fn members_join_leave_and_deleting_forgets_the_document() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let bob = user(&w.db, "bob").await;
    let id = project(&w.db, &ann, "open", true).await;
    let mut events = w.bus.subscribe_project(id);

    let joined = projects::join(&w.db, &w.bus, &bob, id)
        .await
        .expect("joins");
    assert_eq!(joined.role, Some(ProjectRole::Viewer));
    assert!(events.recv().await.is_ok(), "the join is announced");
    assert_eq!(
        projects::members(&w.db, id).await.expect("members").len(),
        2
    );
    projects::leave(&w.db, &w.bus, &bob, id)
        .await
        .expect("leaves");
    assert_eq!(
        projects::members(&w.db, id).await.expect("members").len(),
        1
    );

    files::create_file(&w.db, &w.documents, Some(&ann), id, "main.py", "print(1)")
        .await
        .expect("file created");
    assert!(w.documents.is_loaded(id));
    assert_eq!(
        code(projects::delete(&w.db, &w.documents, &w.bus, &bob, id).await),
        "FORBIDDEN"
    );
    projects::delete(&w.db, &w.documents, &w.bus, &ann, id)
        .await
        .expect("owner deletes");
    assert!(!w.documents.is_loaded(id));
    assert_eq!(
        code(projects::get(&w.db, &Viewer::User(ann), id).await),
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn a_fork_copies_the_files() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let bob = user(&w.db, "bob").await;
    let id = project(&w.db, &ann, "source", true).await;
    files::create_file(&w.db, &w.documents, Some(&ann), id, "a.py", "x = 1")
        .await
        .expect("file created");
    let fork = projects::fork(&w.db, &w.documents, &bob, id, None)
        .await
        .expect("forked");
    assert_eq!(fork.project.title, "source");
    assert!(!fork.project.is_public);
    let copied = files::files(&w.db, &w.documents, Some(&bob), fork.project.id)
        .await
        .expect("fork's files");
    assert_eq!(copied.len(), 1);
    assert_eq!(
        (copied[0].path.as_str(), copied[0].content.as_str()),
        ("a.py", "x = 1")
    );
    assert_eq!(projects::forks_count(&w.db, id).await.expect("count"), 1);
}

#[tokio::test]
async fn file_operations_check_roles_and_paths() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let bob = user(&w.db, "bob").await;
    let id = project(&w.db, &ann, "p", true).await;
    let created = files::create_file(&w.db, &w.documents, Some(&ann), id, "src/main.py", "hi")
        .await
        .expect("created");
    assert_eq!((created.content.as_str(), created.size), ("hi", 2));

    // Readers who are not editors cannot change anything; anonymous readers may read.
    assert_eq!(
        code(files::create_file(&w.db, &w.documents, Some(&bob), id, "b.py", "").await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(files::delete_file(&w.db, &w.documents, None, id, "src/main.py").await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        files::files(&w.db, &w.documents, None, id)
            .await
            .expect("public read")
            .len(),
        1
    );

    // Conflicting paths, in either order, and by a rename: refused, nothing changed.
    let head = w.documents.head(id).await.expect("head").seq;
    for (path, field) in [("src", "path"), ("src/main.py/x", "path")] {
        let refused = files::create_file(&w.db, &w.documents, Some(&ann), id, path, "").await;
        match refused {
            Err(ApiError::BadUserInput { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{path}: {:?}", other.map(|file| file.path)),
        }
    }
    files::create_file(&w.db, &w.documents, Some(&ann), id, "notes", "")
        .await
        .expect("created");
    for new_path in ["notes/a.py", "notes/deeper/a.py"] {
        let refused =
            files::rename_file(&w.db, &w.documents, Some(&ann), id, "src/main.py", new_path).await;
        assert_eq!(code(refused), "BAD_USER_INPUT", "{new_path}");
    }
    assert_eq!(w.documents.head(id).await.expect("head").seq, head + 1);
    assert_eq!(paths(&w, &ann, id).await, ["notes", "src/main.py"]);
    assert_eq!(
        code(files::create_file(&w.db, &w.documents, Some(&ann), id, "notes", "").await),
        "CONFLICT"
    );
    // A file may move into a folder of its own old path's name once it is gone.
    files::rename_file(&w.db, &w.documents, Some(&ann), id, "notes", "notes.md")
        .await
        .expect("renamed");
    files::rename_file(&w.db, &w.documents, Some(&ann), id, "src/main.py", "src")
        .await
        .expect("a file may take the name of the folder it leaves empty");
    assert_eq!(paths(&w, &ann, id).await, ["notes.md", "src"]);
    files::delete_file(&w.db, &w.documents, Some(&ann), id, "src")
        .await
        .expect("deleted");
    assert_eq!(
        code(files::delete_file(&w.db, &w.documents, Some(&ann), id, "src").await),
        "NOT_FOUND"
    );
}

#[tokio::test]
async fn client_ids_are_1_to_64_bytes() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let id = project(&w.db, &ann, "p", false).await;
    let doc = loro::LoroDoc::new();
    doc.get_map(documents::FILES)
        .insert_container("a.py", loro::LoroText::new())
        .and_then(|text| text.insert(0, "x"))
        .expect("edit");
    let update = doc.export(loro::ExportMode::all_updates()).expect("export");
    for (client_id, expected) in [
        (Some(String::new()), "BAD_USER_INPUT"),
        (Some("c".repeat(65)), "BAD_USER_INPUT"),
        (Some("c".repeat(64)), "OK"),
        (Some("c".into()), "OK"),
        (None, "OK"),
    ] {
        let applied =
            files::apply_update(&w.db, &w.documents, Some(&ann), id, client_id, &update).await;
        assert_eq!(code(applied), expected);
    }
    assert_eq!(paths(&w, &ann, id).await, ["a.py"]);
}

#[tokio::test]
async fn shutdown_writes_the_pending_auto_save() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let id = project(&w.db, &ann, "p", false).await;
    files::create_file(&w.db, &w.documents, Some(&ann), id, "a.py", "print(1)")
        .await
        .expect("created");
    assert!(
        schema::versions::store::list(&w.db, id)
            .await
            .expect("versions")
            .is_empty(),
        "no checkpoint before the document goes idle"
    );
    w.documents.shutdown().await;

    let versions = schema::versions::store::list(&w.db, id)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 1);
    assert!(versions[0].is_auto);
    assert_eq!(versions[0].title, "Auto-save");

    // A new hub on the same database (a restart) has the file, and the checkpoint holds it.
    let again = Documents::start(w.db.clone(), w.bus.clone(), collab());
    let files = files::files(&w.db, &again, Some(&ann), id)
        .await
        .expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].content, "print(1)");
    let saved = schema::versions::file_at(&w.db, &again, id, versions[0].id, "a.py")
        .await
        .expect("the file at the auto-save");
    assert_eq!(saved.content, "print(1)");
    // Nothing changed since: stopping again writes no second checkpoint.
    again.shutdown().await;
    assert_eq!(
        schema::versions::store::list(&w.db, id)
            .await
            .expect("versions")
            .len(),
        1
    );
}

/// A handler that only tells which runs the queue handed it.
struct Taken(tokio::sync::mpsc::UnboundedSender<Uuid>);

#[async_trait::async_trait]
impl jobs::queue::RunHandler for Taken {
    async fn handle(&self, run_id: Uuid) {
        let _ = self.0.send(run_id);
    }
}

fn python(source: &str) -> RunRequest {
    RunRequest {
        language: None,
        entry: None,
        source: Some(source.into()),
        stdin: None,
        limits: RunLimits::DEFAULT,
    }
}

#[tokio::test]
async fn runs_are_stored_queued_refused_by_role_and_rate_and_cancelled() {
    let w = world().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let runs = Runs {
        queue: jobs::queue::Queue::sqlite(&dir.path().join("queue.db"))
            .await
            .expect("queue opens"),
        config: RunsConfig {
            runs_per_minute: 3,
            ..RunsConfig::default()
        },
    };
    let ann = user(&w.db, "ann").await;
    let bob = user(&w.db, "bob").await;
    let id = project(&w.db, &ann, "runs", true).await;
    files::create_file(&w.db, &w.documents, Some(&ann), id, "main.py", "print(2)")
        .await
        .expect("file created");

    let run = runs::start(&w.db, &w.documents, &runs, &ann, id, python("print(1)"))
        .await
        .expect("started");
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(
        (run.language, run.entry.as_str()),
        (Language::Python, "main.py")
    );
    assert_eq!(
        run.files,
        serde_json::json!({ "main.py": "print(1)" }),
        "the source, not the project's file"
    );

    // The queue hands the run to a worker.
    let (taken, mut taken_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let queue = runs.queue.clone();
        let stop = stop.clone();
        async move {
            queue
                .work("services-test", 1, Arc::new(Taken(taken)), async move {
                    stop.cancelled().await
                })
                .await
        }
    });
    let handed = tokio::time::timeout(Duration::from_secs(30), taken_rx.recv()).await;
    assert_eq!(handed.ok().flatten(), Some(run.id));
    stop.cancel();
    let _ = worker.await;

    // Refused, and nothing stored: a reader who is not an editor, both or neither of entry
    // and source, an entry the project lacks.
    let stored = |db: DatabaseConnection| async move {
        entity::run::Entity::find().count(&db).await.expect("count")
    };
    assert_eq!(
        code(runs::start(&w.db, &w.documents, &runs, &bob, id, python("1")).await),
        "FORBIDDEN"
    );
    let both = RunRequest {
        entry: Some("main.py".into()),
        ..python("1")
    };
    assert_eq!(
        code(runs::start(&w.db, &w.documents, &runs, &ann, id, both).await),
        "BAD_USER_INPUT"
    );
    let missing = RunRequest {
        entry: Some("nope.py".into()),
        source: None,
        ..python("")
    };
    assert_eq!(
        code(runs::start(&w.db, &w.documents, &runs, &ann, id, missing).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(stored(w.db.clone()).await, 1);

    // A project file runs with the project's files as they are now.
    let entry = RunRequest {
        entry: Some("main.py".into()),
        source: None,
        ..python("")
    };
    let second = runs::start(&w.db, &w.documents, &runs, &ann, id, entry)
        .await
        .expect("entry run");
    assert_eq!(second.files, serde_json::json!({ "main.py": "print(2)" }));

    // The list pages newest first.
    let ann_viewer = Viewer::User(ann.clone());
    let page = runs::list(&w.db, &ann_viewer, id, 1, None)
        .await
        .expect("first page");
    assert_eq!(
        page.runs.iter().map(|(_, r)| r.id).collect::<Vec<_>>(),
        [second.id]
    );
    assert!(page.has_next_page);
    let after = page.runs.last().map(|(cursor, _)| cursor.clone());
    let rest = runs::list(&w.db, &ann_viewer, id, 10, after.as_deref())
        .await
        .expect("second page");
    assert_eq!(
        rest.runs.iter().map(|(_, r)| r.id).collect::<Vec<_>>(),
        [run.id]
    );

    // Cancelling a queued run ends it at once, and its followers hear so.
    let third = runs::start(&w.db, &w.documents, &runs, &ann, id, python("2"))
        .await
        .expect("third run");
    let mut followers = w.bus.subscribe_run(third.id);
    assert_eq!(
        code(runs::cancel(&w.db, &w.bus, &bob, third.id).await),
        "FORBIDDEN"
    );
    let cancelled = runs::cancel(&w.db, &w.bus, &ann, third.id)
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let heard = followers.recv().await.expect("the end is announced");
    assert_eq!(
        *heard,
        RunSignal::Finished {
            status: RunStatus::Cancelled
        }
    );

    // A fourth run within the minute is over the rate.
    assert_eq!(
        code(runs::start(&w.db, &w.documents, &runs, &ann, id, python("3")).await),
        "RATE_LIMITED"
    );
    assert_eq!(stored(w.db.clone()).await, 3);
    assert_eq!(
        code(runs::get(&w.db, &Viewer::Anonymous, run.id).await),
        "OK",
        "a public project's runs are readable"
    );
}

/// An update made by a client of its own (peer `peer`) from an empty document.
fn client_update(peer: u64, edit: impl FnOnce(&loro::LoroDoc)) -> Vec<u8> {
    let doc = loro::LoroDoc::new();
    doc.set_peer_id(peer).expect("peer id");
    edit(&doc);
    doc.commit();
    doc.export(loro::ExportMode::all_updates()).expect("export")
}

fn new_file(path: &str, text: &str) -> impl FnOnce(&loro::LoroDoc) {
    let (path, text) = (path.to_owned(), text.to_owned());
    move |doc| {
        let file = doc
            .get_map(documents::FILES)
            .insert_container(&path, loro::LoroText::new())
            .expect("file");
        file.insert(0, &text).expect("text");
    }
}

/// Edits sent at once are written together (a group commit), each answered with its own
/// place in the log; one refused among them is refused alone and changes nothing, and the
/// log holds exactly the accepted ones.
#[tokio::test]
async fn edits_sent_at_once_are_all_written_and_a_bad_one_alone_refused() {
    let w = world().await;
    let ann = user(&w.db, "ann").await;
    let id = project(&w.db, &ann, "busy", false).await;
    let mut edits = tokio::task::JoinSet::new();
    for peer in 1..=40u64 {
        let (db, documents, ann) = (w.db.clone(), w.documents.clone(), ann.clone());
        let update = if peer == 20 {
            client_update(peer, |doc| {
                doc.get_text("elsewhere").insert(0, "x").expect("text");
            })
        } else {
            client_update(peer, new_file(&format!("f{peer}.py"), &format!("# {peer}")))
        };
        edits.spawn(async move {
            let client = Some(format!("tab-{peer}"));
            let outcome =
                files::apply_update(&db, &documents, Some(&ann), id, client, &update).await;
            (peer, outcome.map(|applied| applied.seq))
        });
    }
    let mut seqs = Vec::new();
    while let Some(joined) = edits.join_next().await {
        let (peer, outcome) = joined.expect("edit task");
        match peer {
            20 => assert_eq!(code(outcome), "BAD_USER_INPUT"),
            _ => seqs.push(outcome.expect("written")),
        }
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=39).collect::<Vec<i64>>(),
        "each its own place, none lost"
    );
    let mut names = paths(&w, &ann, id).await;
    names.sort();
    let mut expected: Vec<String> = (1..=40)
        .filter(|p| *p != 20)
        .map(|p| format!("f{p}.py"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    // What is stored builds the same document.
    let log = documents::store::since(&w.db, id, 0).await.expect("log");
    assert_eq!(log.len(), 39);
    let rebuilt = loro::LoroDoc::new();
    for row in &log {
        rebuilt.import(&row.data).expect("stored update imports");
    }
    let mut stored = documents::list_files(&rebuilt)
        .into_iter()
        .map(|f| f.path)
        .collect::<Vec<_>>();
    stored.sort();
    assert_eq!(stored, expected);
}
