//! Every snapshot a test stack's control plane publishes, run through Envoy's own
//! `envoy --mode validate` (issue 16): the stack starts `serve --test-bootstrap-dir`, which
//! writes each published snapshot as a static bootstrap named by its hash
//! (control-plane/src/envoy_check/published.rs); when the control plane stops, the files
//! not validated before in this run are validated here, one Envoy run each, and a refusal
//! fails the test that pushed the snapshot, with Envoy's message.
//!
//! "Before": a validated hash leaves a marker in `target/e2e-envoy-validated/<module>/`,
//! which every test binary shares (tests build their registries from the same fixtures, so
//! most snapshots recur), `<module>` naming the filter module's size and modification
//! time: Envoy loads the module in validate mode, so a rebuilt filter is validated afresh.
//! The markers are only a cache: removing the directory costs time, never a check. Stacks
//! that push a snapshot Envoy refuses on purpose opt out
//! (`StackOptions::envoy_refuses_on_purpose`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::stack::{envoy_bin, stagedoor_bin, wasm_path, workspace_root};

/// An `envoy --mode validate` run that takes longer than this is stuck (the filter's
/// module is compiled in validate mode: seconds on a loaded machine).
const VALIDATE_LIMIT: Duration = Duration::from_secs(120);

/// On unless `STAGEDOOR_E2E_ENVOY_VALIDATE=0` (to measure what the checks cost, or to run
/// the tests against a `stagedoor` binary without `--test-bootstrap-dir`).
pub fn enabled() -> bool {
    std::env::var("STAGEDOOR_E2E_ENVOY_VALIDATE").map_or(true, |v| v != "0")
}

/// The run-wide directory: markers of validated hashes, and `identity/`, the throwaway
/// Envoy identity the bootstraps name by relative path.
fn validated_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = workspace_root().join("target/e2e-envoy-validated");
        let identity = dir.join("identity");
        if !identity.join("envoy-validate.pem").is_file() {
            // A per-process directory first, renamed into place: two test binaries at once
            // never see half an identity.
            let fresh = dir.join(format!("identity-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&fresh);
            let run = |args: &[&str]| {
                let out = Command::new(stagedoor_bin()).args(args).stdout(Stdio::null()).output().expect("run stagedoor certs");
                assert!(out.status.success(), "stagedoor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            };
            let fresh_str = fresh.display().to_string();
            run(&["certs", "init", "--dir", &fresh_str]);
            run(&["certs", "envoy", "--dir", &fresh_str, "--node-id", "validate"]);
            if std::fs::rename(&fresh, &identity).is_err() {
                // Another process won the race: its identity is as good.
                let _ = std::fs::remove_dir_all(&fresh);
            }
        }
        dir
    })
}

/// Validates the bootstraps in `published` not validated before in this run. Ok: how many
/// Envoy ran on and how long that took; Err: Envoy's words on each refused one.
pub fn validate_new(published: &Path) -> Result<(usize, Duration), String> {
    let Ok(entries) = std::fs::read_dir(published) else { return Ok((0, Duration::ZERO)) };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "pb")).collect();
    files.sort();
    let dir = validated_dir();
    let markers = dir.join(module_fingerprint());
    let _ = std::fs::create_dir_all(&markers);
    let started = Instant::now();
    let (mut ran, mut refusals) = (0, Vec::new());
    for file in files {
        let Some(hash) = file.file_stem().and_then(|s| s.to_str()) else { continue };
        let marker = markers.join(hash);
        if marker.exists() {
            continue;
        }
        ran += 1;
        match envoy_validate(dir, &file) {
            Ok(()) => {
                let _ = std::fs::write(&marker, "");
            }
            Err(said) => refusals.push(format!("{}:\n{said}", file.display())),
        }
    }
    if refusals.is_empty() {
        Ok((ran, started.elapsed()))
    } else {
        Err(format!("envoy --mode validate refused {} published snapshot(s):\n{}", refusals.len(), refusals.join("\n")))
    }
}

/// The filter module as the markers know it: its size and modification time.
fn module_fingerprint() -> String {
    let meta = std::fs::metadata(wasm_path()).ok();
    let len = meta.as_ref().map(|m| m.len()).unwrap_or_default();
    let modified = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    format!("module-{len}-{}", modified.as_nanos())
}

/// One `envoy --mode validate -c file` in `cwd` (where `identity/` is): Ok, or its output.
fn envoy_validate(cwd: &Path, file: &Path) -> Result<(), String> {
    let log = file.with_extension("validate.log");
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(envoy_bin())
        .current_dir(cwd)
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("run {}: {e}", envoy_bin().display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > VALIDATE_LIMIT {
            // Only the child this call started.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(()),
        Some(_) => Err(said),
        None => Err(format!("{said}\n[timeout] envoy --mode validate did not finish in {VALIDATE_LIMIT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bootstrap Envoy refuses is an Err carrying Envoy's words and leaves no marker, so
    /// the next stack that publishes it is checked again; an accepted one is not run twice.
    #[test]
    fn a_refused_bootstrap_fails_with_envoys_message_and_an_accepted_one_runs_once() {
        let dir = std::env::temp_dir().join(format!("stagedoor-published-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let empty_bootstrap = dir.join("0000-empty.pb");
        std::fs::write(&empty_bootstrap, b"").unwrap();
        let first = validate_new(&dir);
        assert!(first.is_ok(), "an empty bootstrap is valid: {first:?}");
        let second = validate_new(&dir).unwrap();
        assert_eq!(second.0, 0, "validated once, then skipped by its marker");
        // A Bootstrap with a field Envoy does not know (number 999): refused.
        let unknown_field = dir.join("ffff-unknown-field.pb");
        std::fs::write(&unknown_field, [0xb8, 0x3e, 0x01]).unwrap();
        let refused = validate_new(&dir).unwrap_err();
        assert!(refused.contains("ffff-unknown-field.pb") && refused.contains("refused 1 published snapshot"), "{refused}");
        assert!(refused.contains("unknown field"), "Envoy's own words: {refused}");
        assert!(!validated_dir().join(module_fingerprint()).join("ffff-unknown-field").exists(), "no marker for a refused one");
        let _ = std::fs::remove_file(validated_dir().join(module_fingerprint()).join("0000-empty"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
