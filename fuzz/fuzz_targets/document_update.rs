//! Update blobs as `applyUpdate` receives them: decoded, imported into a project document,
//! and checked for shape (only `files`, texts, valid paths, sizes). Nothing may panic.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use loro::{EncodedBlobMode, LoroDoc};
use schema::documents::{CollabConfig, check_shape};

fuzz_target!(|data: &[u8]| {
    // Limits of the fuzzer's own: small enough that the size checks are reached.
    let config = CollabConfig {
        max_update_bytes: 1024 * 1024,
        max_file_bytes: 64 * 1024,
        max_files: 100,
        compact_after_updates: 500,
        idle_unload: Duration::from_secs(120),
        autosave_idle: Duration::from_secs(600),
        presence_ttl: Duration::from_secs(30),
        subscriber_queue: 512,
    };
    if data.len() > config.max_update_bytes {
        return;
    }
    let Ok(meta) = LoroDoc::decode_import_blob_meta(data, true) else {
        return;
    };
    if !matches!(meta.mode, EncodedBlobMode::Updates) {
        return;
    }
    let doc = LoroDoc::new();
    let before = doc.oplog_vv();
    if let Ok(status) = doc.import(data)
        && status.pending.is_none()
    {
        let _ = check_shape(&doc, &before, &config);
    }
});
