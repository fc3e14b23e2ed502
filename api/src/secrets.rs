//! The access-token signing key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Config, Mode};

pub const MIN_SECRET_LEN: usize = 32;
const KEY_FILE: &str = "jwt_secret";

/// `JWT_SECRET`, or in embedded mode a key generated once and kept in the data directory.
pub fn jwt_secret(config: &Config) -> anyhow::Result<SecretString> {
    match (&config.auth.jwt_secret, config.mode()) {
        (Some(secret), _) => {
            if secret.expose_secret().chars().count() < MIN_SECRET_LEN {
                anyhow::bail!("JWT_SECRET must be at least {MIN_SECRET_LEN} characters long");
            }
            Ok(secret.clone())
        }
        (None, Mode::Production) => anyhow::bail!(
            "JWT_SECRET is required when DATABASE_URL is set (production mode); \
             set it to a random string of at least {MIN_SECRET_LEN} characters, e.g. the output of `openssl rand -hex 32`"
        ),
        (None, Mode::Embedded) => load_or_create(&config.database.data_dir.join(KEY_FILE)),
    }
}

fn load_or_create(path: &Path) -> anyhow::Result<SecretString> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(fresh.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("could not write {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new token signing key");
            Ok(SecretString::from(fresh))
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("could not restrict permissions of {}", path.display()))?;
            let key = std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let key = key.trim().to_owned();
            if key.len() < MIN_SECRET_LEN {
                anyhow::bail!(
                    "{} is damaged (shorter than {MIN_SECRET_LEN} characters); delete it to generate a new key",
                    path.display()
                );
            }
            Ok(SecretString::from(key))
        }
        Err(err) => Err(err).with_context(|| format!("could not create {}", path.display())),
    }
}
