//! SHA-256 (the `sha2` crate: the one implementation model handling uses) and the size-then-digest
//! check every model file passes before use, whatever source it came from.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::manifest::AcceptedDigest;
use crate::store::{io_err, SourceFailure};

/// Lower-case hex sha256 of bytes in memory.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks size then sha256 of a file against the accepted digests.
pub fn verify_file(path: &Path, accepted: &[AcceptedDigest]) -> Result<(), SourceFailure> {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(SourceFailure::NotFound(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceFailure::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if !accepted.iter().any(|a| a.bytes == meta.len()) {
        return Err(SourceFailure::SizeMismatch {
            path: path.to_path_buf(),
            actual: meta.len(),
            expected: accepted.iter().map(|a| a.bytes).collect(),
        });
    }
    let actual = sha256_file(path).map_err(io_err(path))?;
    if accepted.iter().any(|a| a.sha256 == actual) {
        Ok(())
    } else {
        Err(SourceFailure::ChecksumMismatch {
            path: path.to_path_buf(),
            actual,
        })
    }
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

