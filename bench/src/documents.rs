//! Many loaded documents: the server's memory for `count` projects of one 10 KiB file each.

use std::time::Duration;

use crate::server::Server;

pub async fn run(server: &Server, count: usize) -> anyhow::Result<()> {
    let token = server.sign_up("bench").await?;
    let rss_before = server.rss_bytes()?;
    let content = text_of(10);
    for i in 0..count {
        let project = server.create_project(&token, &format!("doc {i}")).await?;
        // Creating the file loads the document, which stays in memory while not idle.
        server
            .create_file(&token, &project, "main.py", &content)
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = server.rss_bytes()?.saturating_sub(rss_before);
    println!(
        "{count} loaded documents of {} bytes: server memory +{:.1} MiB ({} KiB each)",
        content.len(),
        grown as f64 / (1024.0 * 1024.0),
        grown / 1024 / count.max(1) as u64
    );
    Ok(())
}

/// `kib` KiB of text in lines of 64 bytes.
pub fn text_of(kib: usize) -> String {
    ("x".repeat(63) + "\n").repeat(kib * 1024 / 64)
}
