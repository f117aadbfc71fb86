//! `nfsha __generate-docs`: what the packages ship as man pages, completions and unit.
//!
//! Each test generates the docs into a temporary directory from the built binary.

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;

/// Pages of other packages the nfsha pages may refer to (installed with systemd,
/// nfs-common/nfs-utils, autofs, nfs-kernel-server, util-linux).
const SYSTEM_PAGES: &[&str] = &[
    "systemctl(1)",
    "journalctl(1)",
    "systemd.unit(5)",
    "systemd.service(5)",
    "fstab(5)",
    "nfs(5)",
    "auto.master(5)",
    "exports(5)",
    "mount.nfs(8)",
    "umount(8)",
    "exportfs(8)",
    "rpc.nfsd(8)",
    "automount(8)",
];

fn generate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_nfsha"))
        .arg("__generate-docs")
        .arg(dir.path())
        .assert()
        .success();
    dir
}

/// (file name, text) of every man page.
fn man_pages(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir.join("man"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `name(N)` references in roff text (`\fBnfsha\-agent\fR(1)` → `nfsha-agent(1)`).
fn references(roff: &str) -> BTreeSet<String> {
    let plain = roff
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
        .replace("\\-", "-");
    let b = plain.as_bytes();
    let mut out = BTreeSet::new();
    for i in 0..b.len().saturating_sub(2) {
        if b[i] == b'(' && (b'1'..=b'8').contains(&b[i + 1]) && b[i + 2] == b')' {
            let mut s = i;
            while s > 0 && (b[s - 1].is_ascii_alphanumeric() || b"._-".contains(&b[s - 1])) {
                s -= 1;
            }
            if s < i {
                out.insert(plain[s..i + 3].to_string());
            }
        }
    }
    out
}

#[test]
fn every_page_has_the_operator_sections() {
    let dir = generate();
    let pages = man_pages(dir.path());
    assert!(pages.len() >= 15, "{} pages", pages.len());
    for (name, text) in pages.iter().filter(|(n, _)| n.ends_with(".1")) {
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH FILES",
            ".SH EXIT STATUS",
            ".SH SIGNALS",
            ".SH ENVIRONMENT",
            ".SH EXAMPLES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(
                text.lines().any(|l| l == section),
                "{name} has no `{section}`"
            );
        }
    }
    let agent = &pages.iter().find(|(n, _)| n == "nfsha-agent.1").unwrap().1;
    assert!(
        agent.contains("SIGHUP"),
        "agent page does not document SIGHUP"
    );
    let check = &pages.iter().find(|(n, _)| n == "nfsha-check.1").unwrap().1;
    assert!(
        check.contains("UNKNOWN"),
        "check page lacks its exit status 3"
    );
}

#[test]
fn no_reference_to_a_page_that_does_not_exist() {
    let dir = generate();
    let pages = man_pages(dir.path());
    let existing: BTreeSet<String> = pages
        .iter()
        .map(|(n, _)| {
            let (stem, sec) = n.rsplit_once('.').unwrap();
            format!("{stem}({sec})")
        })
        .chain(SYSTEM_PAGES.iter().map(|s| s.to_string()))
        .collect();
    let mut dangling = Vec::new();
    let mut seen = 0;
    for (name, text) in &pages {
        for r in references(text) {
            seen += 1;
            if !existing.contains(&r) {
                dangling.push(format!("{name} -> {r}"));
            }
        }
    }
    let unit = std::fs::read_to_string(dir.path().join("systemd/nfsha-agent.service")).unwrap();
    for doc in unit
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
    {
        for r in doc.split_whitespace() {
            seen += 1;
            let page = r.strip_prefix("man:").unwrap_or(r);
            if !existing.contains(page) {
                dangling.push(format!("nfsha-agent.service -> {page}"));
            }
        }
    }
    assert!(
        seen > 50,
        "only {seen} references found: the scan is broken"
    );
    assert!(
        dangling.is_empty(),
        "dangling references:\n{}",
        dangling.join("\n")
    );
    assert!(existing.contains("nfsha.toml(5)"));
}

#[test]
fn config_page_lists_every_key_the_checker_knows() {
    let dir = generate();
    let page = std::fs::read_to_string(dir.path().join("man/nfsha.toml.5")).unwrap();
    let mut n = 0;
    for (section, keys) in nfsha_config::known_sections() {
        let heading = format!(".SH \"KEYS: {section}\"");
        let at = page
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading}"));
        let body = &page[at + heading.len()..];
        let body = &body[..body.find("\n.SH ").unwrap_or(body.len())];
        for key in keys {
            n += 1;
            let entry = format!(".TP\n\\fB{}\\fR\n", key.replace('-', "\\-"));
            let at = body
                .find(&entry)
                .unwrap_or_else(|| panic!("{section} {key} missing from nfsha.toml(5)"));
            // Every key of the server's sections is described (issue 14).
            let text = body[at + entry.len()..].split("\n.TP").next().unwrap_or("");
            if section.contains("[server") {
                assert!(
                    !text.contains("no description yet"),
                    "{section} {key} has no description in nfsha.toml(5): {text:?}"
                );
            }
        }
    }
    assert!(n > 40, "only {n} keys");
    assert!(page.contains("Default: 2s."), "no default was rendered");
}

#[test]
fn completions_offer_no_hidden_command() {
    let dir = generate();
    for file in ["nfsha.bash", "_nfsha", "nfsha.fish"] {
        let text = std::fs::read_to_string(dir.path().join("completions").join(file)).unwrap();
        for visible in ["agent", "switchover", "config", "dry-run"] {
            assert!(text.contains(visible), "{file} lacks {visible}");
        }
        for hidden in ["__worker", "__generate-docs", "__generate_docs"] {
            assert!(!text.contains(hidden), "{file} offers {hidden}");
        }
        // `server fence-guard` is hidden, `server run --no-fence-guard` is a real option:
        // look for the forms each generator gives a subcommand name (each found in the
        // scripts generated before hidden commands were filtered out).
        for form in [
            ",fence-guard)",
            "'fence-guard:",
            "\"fence-guard\"",
            "Internal:",
        ] {
            assert!(
                !text.contains(form),
                "{file} offers a hidden command: {form}"
            );
        }
    }
}

#[test]
fn packaged_unit_is_the_generated_one() {
    let dir = generate();
    let generated =
        std::fs::read_to_string(dir.path().join("systemd/nfsha-agent.service")).unwrap();
    let committed = include_str!("../../../packaging/systemd/nfsha-agent.service");
    assert_eq!(
        generated, committed,
        "packaging/systemd/nfsha-agent.service is stale: copy it from `nfsha __generate-docs`"
    );
    assert!(!committed.contains("Written by `nfsha setup`"));
}
