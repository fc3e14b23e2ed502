//! Update blobs as `applyUpdate` receives them: decoded, imported into a project document,
//! and checked for shape (only `files`, texts, valid paths, sizes). Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loro::{EncodedBlobMode, LoroDoc};
use schema::documents::{CollabConfig, check_shape};

fuzz_target!(|data: &[u8]| {
    let config = CollabConfig::default();
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
