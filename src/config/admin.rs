//! The principal of the embedded defaults: without a config file, one admin whose
//! token is generated once into `<data_dir>/admin.token` (mode 0600), never a shared
//! default secret.

use std::io::Read;
use std::path::Path;

use crate::base::logger::COMMAND;
use crate::domain::auth::{Principal, Role};

/// The admin principal, its token read from `<data_dir>/admin.token` or generated there.
pub fn generated_admin(data_dir: &Path) -> Result<Principal, String> {
    let path = data_dir.join("admin.token");
    let token = match std::fs::read_to_string(&path) {
        Ok(token) => token.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => new_token(&path)?,
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    log::info!(
        target: COMMAND,
        "no config file: admin bearer token is in {}",
        path.display()
    );
    Ok(Principal {
        id: "admin".to_string(),
        token,
        role: Role::Admin,
        projects: vec!["*".to_string()],
        rate_per_second: None,
        burst: None,
    })
}

/// 32 random bytes in hex, written to a new file at `path` that only its owner reads.
fn new_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, token.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(token)
}
