//! The container image's recipe (`Dockerfile`, `.dockerignore`), checked without a container
//! engine: what the build reads is in the build context, the base images are build arguments,
//! nothing is fetched from a registry but those bases, and the image runs as a numeric
//! non-root user. `scripts/e2e.sh` builds and runs the image for real; these catch the same
//! defects in the ordinary test run.

use std::{fs, path::PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Instructions of the Dockerfile, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in read("Dockerfile").lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(t);
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
            }
        }
    }
    out
}

/// The top-level directories or files of the repository the build reads: every `path = ".."`
/// of Cargo.toml (targets, path dependencies, `[patch]` entries), Cargo.lock, and what
/// `include_str!`/`include_bytes!` read from src/.
fn build_inputs() -> Vec<String> {
    let mut tops = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".into(),
        "rust-toolchain.toml".into(),
    ];
    for line in read("Cargo.toml").lines() {
        let mut rest = line;
        while let Some(i) = rest.find("path = \"") {
            rest = &rest[i + 8..];
            let p = &rest[..rest.find('"').expect("closing quote")];
            tops.push(p.split('/').next().unwrap().to_string());
        }
    }
    tops.sort();
    tops.dedup();
    tops
}

#[test]
fn dockerfile_copies_everything_the_build_reads() {
    let copies: Vec<String> = instructions()
        .into_iter()
        .filter(|i| i.starts_with("COPY ") && !i.contains("--from="))
        .collect();
    let ignore = read(".dockerignore");
    for input in build_inputs() {
        assert!(
            copies.iter().any(|c| c
                .split_whitespace()
                .skip(1)
                .any(|w| w == input || w.trim_end_matches('/') == input)),
            "the Dockerfile never copies {input}, which the build reads (Cargo.toml)"
        );
        assert!(
            ignore
                .lines()
                .any(|l| l.trim() == format!("!{input}") || l.trim() == format!("!{input}/")),
            ".dockerignore leaves {input} out of the build context"
        );
    }
}

#[test]
fn included_files_live_under_src() {
    // include_str!/include_bytes! paths are relative to their file; every one must stay in src/
    // (the only source directory copied into the image).
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = root().join("src").canonicalize().unwrap();
    let mut files = Vec::new();
    walk(&src, &mut files);
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        for mac in ["include_str!(\"", "include_bytes!(\""] {
            for (i, _) in text.match_indices(mac) {
                let rest = &text[i + mac.len()..];
                let rel = &rest[..rest.find('"').unwrap()];
                let target = f
                    .parent()
                    .unwrap()
                    .join(rel)
                    .canonicalize()
                    .unwrap_or_else(|e| {
                        panic!("{}: {rel}: {e}", f.display());
                    });
                assert!(
                    target.starts_with(&src),
                    "{} includes {rel}, outside src/ (not in the image's build context)",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn base_images_are_build_arguments_and_nothing_else_is_pulled() {
    let text = read("Dockerfile");
    // A `# syntax=` line makes BuildKit pull a frontend image from a registry first.
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("# syntax=")),
        "the Dockerfile pulls a frontend image (# syntax=); offline and mirror builds fail"
    );
    let ins = instructions();
    let mut stages = Vec::new();
    let args: Vec<&str> = ins
        .iter()
        .take_while(|i| !i.starts_with("FROM "))
        .filter_map(|i| i.strip_prefix("ARG "))
        .map(|a| a.split('=').next().unwrap())
        .collect();
    for from in ins.iter().filter_map(|i| i.strip_prefix("FROM ")) {
        let mut words = from.split_whitespace();
        let image = words.next().unwrap();
        let named = image
            .strip_prefix("${")
            .and_then(|v| v.strip_suffix('}'))
            .is_some_and(|v| args.contains(&v));
        assert!(
            named || stages.contains(&image.to_string()),
            "FROM {image}: base images must be build arguments declared before the first FROM"
        );
        if let (Some("AS"), Some(name)) = (words.next(), words.next()) {
            stages.push(name.to_string());
        }
    }
    assert!(
        args.len() >= 2,
        "expected a builder and a runtime base argument: {args:?}"
    );
}

#[test]
fn image_runs_as_a_numeric_non_root_user() {
    let ins = instructions();
    let last_from = ins.iter().rposition(|i| i.starts_with("FROM ")).unwrap();
    let user = ins[last_from..]
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("the runtime stage sets no USER (it would run as root)");
    let uid = user.split(':').next().unwrap();
    // Kubernetes' runAsNonRoot can only verify a numeric user.
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("USER {user} is not numeric"));
    assert_ne!(uid, 0, "the image runs as root");
}

/// The runtime base has no C library (distroless `static`, about 2 MB), so the binary must be
/// linked statically; the `cc` base (about 22 MB) with the dynamic binary would be about 40 MB,
/// over the 30 MB budget. (`scripts/e2e.sh` measures the built image.)
#[test]
fn the_binary_is_static_for_a_base_without_libc() {
    let ins = instructions();
    let runtime_default = ins
        .iter()
        .filter_map(|i| i.strip_prefix("ARG RUNTIME_IMAGE="))
        .next()
        .expect("a RUNTIME_IMAGE build argument with a default");
    assert!(
        runtime_default.contains("distroless/static"),
        "runtime base {runtime_default}: the size budget assumes distroless static"
    );
    let build = ins
        .iter()
        .find(|i| i.starts_with("RUN ") && i.contains("cargo build"))
        .expect("a cargo build step");
    assert!(
        build.contains("target-feature=+crt-static") && build.contains("--target"),
        "the release build must link statically (crt-static, with an explicit --target): {build}"
    );
}
