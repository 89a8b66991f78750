use super::*;
use crate::tls::generate::{init, InitRequest};

fn pem_of(name: &str) -> (String, i64) {
    let dir = crate::tls::files::CredentialDir::new(std::env::temp_dir().join(format!("stagedoor-cert-status-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(dir.path());
    init(&dir, &InitRequest { sans: &[], node_id: "n", operator: "o", force: false }).unwrap();
    (std::fs::read_to_string(dir.control_plane().cert).unwrap(), crate::tls::load::unix_now())
}

#[test]
fn a_problem_keeps_its_first_sighting_until_it_changes_or_clears() {
    let problems = CertificateProblems::default();
    problems.report(Source::ControlPlane, Some("/d/control-plane-key.pem"), "key mismatch", 100);
    problems.report(Source::ControlPlane, Some("/d/control-plane-key.pem"), "key mismatch", 200);
    problems.report(Source::Registry, None, "edge_tls: bad", 150);
    let listed = problems.list();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].source, listed[0].since_unix, listed[0].file.as_deref()), (Source::ControlPlane, 100, Some("/d/control-plane-key.pem")));
    // Another problem from the same source replaces it, with its own since.
    problems.report(Source::ControlPlane, Some("/d/control-plane.pem"), "expired", 300);
    assert_eq!(problems.list()[0].since_unix, 300);
    problems.clear(Source::ControlPlane);
    assert_eq!(problems.list().iter().map(|p| p.source).collect::<Vec<_>>(), [Source::Registry]);
}

#[test]
fn expiry_is_flagged_within_the_warning_window_and_unparsable_pem_is_skipped() {
    let (pem, now) = pem_of("expiry");
    let listed = expiries([(String::from("control plane"), pem.as_str()), (String::from("junk"), "not pem")], now);
    assert_eq!(listed.len(), 1);
    let cert = &listed[0];
    // certs init: a year from now (to the second, so 365 days or just under).
    assert!((364..=365).contains(&cert.days_left), "{cert:?}");
    assert_eq!((cert.what.as_str(), cert.expiring_soon), ("control plane", false));
    assert!(cert.subject.contains("stagedoor control plane"), "{}", cert.subject);
    let near = expiries([(String::from("control plane"), pem.as_str())], cert.not_after_unix - 29 * 86_400 - 1);
    assert_eq!((near[0].days_left, near[0].expiring_soon), (29, true));
    let past = expiries([(String::from("control plane"), pem.as_str())], cert.not_after_unix + 86_400);
    assert!(past[0].days_left < 0 && past[0].expiring_soon);
}
