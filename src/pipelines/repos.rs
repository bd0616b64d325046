//! Repository URLs by policy, and git's timeouts.
//!
//! Which values are repository URLs: every input whose name ends in `repo_url` (the clone
//! tool's `repo_url` in the demo catalogue and the reference's fixtures) must be one, and *any*
//! other string value that starts with `scheme://` is held to the same policy. The second rule is
//! the safe one: a template may hand a URL to git (or to `pip`, `curl`, ...) under any input
//! name, and a rule that looks at names alone would let `file:///etc` through under another one.
//!
//! The policy ([`check_url`]):
//! - the scheme must be one of `REPO_URL_SCHEMES` (default `https`; `ssh`, `http`, `git` and
//!   `file` are opt-in). `git+ssh://` and `ssh+git://` count as `ssh`, and so does git's
//!   scp-like form `[user@]host:path` in a repository input;
//! - a repository input takes nothing else: no bare local path (git would clone it), no
//!   `<transport>::<address>` (git's remote helpers, `ext::` runs commands);
//! - `file://` names an absolute local path (`file:///path`, or `file://localhost/path`) below
//!   one of `REPO_FILE_ROOTS`, resolved the way the kernel will resolve it: `.`/`..` segments
//!   and percent escapes are refused (git and a URL parser would read them differently), and
//!   symbolic links are followed before the comparison, so neither can lead out of a root;
//! - no white space or control character anywhere (a URL parser drops tabs and new lines that
//!   git would keep), no host or user name starting with `-` (it would reach `ssh` as an option).

use crate::config::Config;
use std::path::{Path, PathBuf};

/// Whether an input (the last segment of `<subworkflow>.<tool>.<input>`) is a repository URL.
pub fn is_repo_input(input: &str) -> bool {
    input.to_ascii_lowercase().ends_with("repo_url")
}

/// The lower-cased scheme of a `scheme://...` value (RFC 3986 scheme characters).
fn scheme_of(value: &str) -> Option<String> {
    let (scheme, _) = value.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| scheme.to_ascii_lowercase())
}

fn allowed_list(config: &Config) -> String {
    if config.runs.repo_url_schemes.is_empty() {
        "none".into()
    } else {
        config.runs.repo_url_schemes.join(", ")
    }
}

fn refuse_scheme(config: &Config, scheme: &str) -> String {
    format!(
        "The URL scheme {scheme}:// is not allowed here (allowed: {}; REPO_URL_SCHEMES).",
        allowed_list(config)
    )
}

/// Checks one string value against the policy. `repo_input` says whether the value is a
/// repository input (then it must be a repository URL, or empty for "not set").
pub fn check_url(config: &Config, value: &str, repo_input: bool) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let candidate = if repo_input {
        value
    } else {
        value.trim_start()
    };
    let Some(scheme) = scheme_of(candidate) else {
        return if repo_input {
            check_scp_like(config, value)
        } else {
            Ok(())
        };
    };
    if candidate
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("A URL must not contain white space or control characters.".into());
    }
    let scheme = match scheme.as_str() {
        "git+ssh" | "ssh+git" => "ssh".to_string(),
        _ => scheme,
    };
    if !config.runs.repo_url_schemes.contains(&scheme) {
        return Err(refuse_scheme(config, &scheme));
    }
    if scheme == "file" {
        return check_file(config, &candidate["file://".len()..]);
    }
    let url = url::Url::parse(candidate).map_err(|e| format!("Not a valid URL: {e}."))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("A {scheme}:// URL must name a host."));
    }
    if host.starts_with('-') || url.username().starts_with('-') {
        return Err("A host or user name must not start with '-'.".into());
    }
    Ok(())
}

/// git's scp-like syntax, `[user@]host:path`: an ssh URL.
fn check_scp_like(config: &Config, value: &str) -> Result<(), String> {
    let not_a_url = || {
        format!(
            "Expected a repository URL such as https://host/org/repo.git (allowed schemes: {}; REPO_URL_SCHEMES).",
            allowed_list(config)
        )
    };
    let Some((authority, path)) = value.split_once(':') else {
        return Err(not_a_url());
    };
    let (user, host) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    let path_ok = !path.is_empty()
        && !path.starts_with([':', '-'])
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if !(name_ok(host) && user.is_none_or(name_ok) && path_ok) {
        return Err(not_a_url());
    }
    if !config.runs.repo_url_schemes.iter().any(|s| s == "ssh") {
        return Err(refuse_scheme(config, "ssh"));
    }
    Ok(())
}

/// The path of a `file://` URL (given without the scheme) must lie below a configured root.
fn check_file(config: &Config, rest: &str) -> Result<(), String> {
    let path = match rest.strip_prefix("localhost") {
        Some(p) if p.starts_with('/') => p,
        _ if rest.starts_with('/') => rest,
        _ => {
            return Err("A file:// URL must name an absolute local path (file:///path).".into());
        }
    };
    if path.contains(['%', '?', '#', '\\']) {
        return Err("A file:// URL must not contain '%', '?', '#' or '\\'.".into());
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err("A file:// URL must not contain '.' or '..' segments.".into());
    }
    if config.runs.repo_file_roots.is_empty() {
        return Err(
            "Local repositories are not allowed: no directory is listed in REPO_FILE_ROOTS.".into(),
        );
    }
    let resolved = resolve(Path::new(path));
    if config
        .runs
        .repo_file_roots
        .iter()
        .any(|root| resolved.starts_with(root))
    {
        Ok(())
    } else {
        Err(format!(
            "file:// URLs are allowed only below {} (REPO_FILE_ROOTS).",
            config
                .runs
                .repo_file_roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// `path` with its longest existing ancestor canonicalised (symbolic links followed) and the
/// rest appended: what the kernel would open, also for a path that does not exist yet.
fn resolve(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut out = canonical;
            out.extend(missing.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Checks the value every declared input of a run will have (the run's parameter, else the
/// pipeline's `default_inputs` default, else the subworkflow's own default) against the
/// policy. Errors name where the value comes from: `parameters.<sw>.<tool>.<input>`,
/// `default_inputs.<sw>.<tool>.<input>.default` or `user_params.<sw>.<tool>.<input>.default`.
pub fn check_run(
    config: &Config,
    graph: &super::PipelineGraph,
    parameters: &serde_json::Value,
) -> Result<(), crate::error::AppError> {
    let mut errors = crate::error::FieldErrors::new();
    let defaults = graph.pipeline.default_inputs.as_ref();
    for (sw, _) in &graph.subworkflows {
        let Some(tools) = sw.user_params.as_object() else {
            continue;
        };
        for (tool, inputs) in tools {
            let Some(inputs) = inputs.as_object() else {
                continue;
            };
            for (input, spec) in inputs {
                let path = format!("{}.{tool}.{input}", sw.slug);
                let given = parameters
                    .get(&sw.slug)
                    .and_then(|t| t.get(tool))
                    .and_then(|i| i.get(input))
                    .map(|v| (format!("parameters.{path}"), v));
                let default = || {
                    defaults
                        .and_then(|d| d.get(&sw.slug)?.get(tool)?.get(input)?.get("default"))
                        .map(|v| (format!("default_inputs.{path}.default"), v))
                };
                let own = || {
                    spec.get("default")
                        .map(|v| (format!("user_params.{path}.default"), v))
                };
                let Some((field, value)) = given.or_else(default).or_else(own) else {
                    continue;
                };
                if let Err(msg) = super::params::string_values(value)
                    .try_for_each(|s| check_url(config, s, is_repo_input(input)))
                {
                    errors.insert(field, vec![msg]);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::error::AppError::Validation(errors))
    }
}

/// The environment that bounds git's network waits: `GIT_HTTP_LOW_SPEED_LIMIT` and
/// `GIT_HTTP_LOW_SPEED_TIME` (an http(s) transfer slower than the limit for that long is
/// abandoned) and `GIT_SSH_COMMAND` with ssh's `ConnectTimeout` (and `BatchMode`, so a
/// password prompt fails instead of waiting). git's own `git://` protocol has no timeout of
/// its own: the run's wall-clock limit bounds it.
pub fn git_timeout_env(config: &Config) -> Vec<(String, String)> {
    vec![
        (
            "GIT_HTTP_LOW_SPEED_LIMIT".into(),
            config.runs.repo_low_speed_limit.to_string(),
        ),
        (
            "GIT_HTTP_LOW_SPEED_TIME".into(),
            config.runs.repo_low_speed_time_secs.to_string(),
        ),
        (
            "GIT_SSH_COMMAND".into(),
            format!(
                "ssh -o ConnectTimeout={} -o BatchMode=yes",
                config.runs.repo_connect_timeout_secs
            ),
        ),
    ]
}

/// `GIT_ALLOW_PROTOCOL`: the protocols git itself may use, from `REPO_URL_SCHEMES` (a second
/// line behind [`check_url`]: redirects, submodules and remote helpers are held to it too).
pub fn git_protocol_env(config: &Config) -> Vec<(String, String)> {
    vec![(
        "GIT_ALLOW_PROTOCOL".into(),
        config.runs.repo_url_schemes.join(":"),
    )]
}

/// Everything git needs from the policy: [`git_timeout_env`] and [`git_protocol_env`].
pub fn git_env(config: &Config) -> Vec<(String, String)> {
    let mut env = git_timeout_env(config);
    env.extend(git_protocol_env(config));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn repository_inputs_by_name() {
        assert!(is_repo_input("repo_url"));
        assert!(is_repo_input("source_repo_url"));
        assert!(is_repo_input("Repo_URL"));
        assert!(!is_repo_input("repo_branch"));
        assert!(!is_repo_input("url"));
    }

    #[test]
    fn only_https_by_default() {
        let c = config(&[]);
        assert_eq!(c.runs.repo_url_schemes, ["https"]);
        check_url(&c, "https://github.com/o/r.git", true).unwrap();
        check_url(&c, "", true).unwrap();
        for bad in [
            "http://example.org/r.git",
            "ssh://git@github.com/o/r.git",
            "git://example.org/r.git",
            "file:///etc",
            "FILE:///etc",
            "git@github.com:o/r.git",
            "/etc",
            "../x",
            "ext::sh -c touch% /tmp/x",
            "https::example.org",
            "-upload-pack=x",
            "https://github.com/o/r\n.git",
            " https://github.com/o/r.git",
        ] {
            let e = check_url(&c, bad, true).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        // Not a repository input: plain strings pass, URLs are held to the policy.
        check_url(&c, "main", false).unwrap();
        check_url(&c, ".*\\.py", false).unwrap();
        check_url(&c, "a:b", false).unwrap();
        assert!(check_url(&c, "file:///etc/passwd", false).is_err());
        assert!(check_url(&c, " file:///etc/passwd", false).is_err());
        assert!(check_url(&c, "git+file:///etc", false).is_err());
        check_url(&c, "https://example.org/data.csv", false).unwrap();
    }

    #[test]
    fn opt_in_schemes() {
        let c = config(&[("REPO_URL_SCHEMES", "https, SSH,git")]);
        assert_eq!(c.runs.repo_url_schemes, ["https", "ssh", "git"]);
        check_url(&c, "ssh://git@github.com/o/r.git", true).unwrap();
        check_url(&c, "git+ssh://git@github.com/o/r.git", true).unwrap();
        check_url(&c, "git@github.com:o/r.git", true).unwrap();
        check_url(&c, "github.com:o/r.git", true).unwrap();
        check_url(&c, "git://10.0.0.1:9418/r.git", true).unwrap();
        assert!(check_url(&c, "ssh://-oProxyCommand=x/r", true).is_err());
        assert!(check_url(&c, "ssh://-oProxyCommand=x@host/r", true).is_err());
        assert!(check_url(&c, "-oProxyCommand=x:r", true).is_err());
        assert!(check_url(&c, "http://example.org/r.git", true).is_err());
        assert!(
            Config::from_iter([("REPO_URL_SCHEMES".to_string(), "ftp".to_string())])
                .unwrap_err()
                .to_string()
                .contains("REPO_URL_SCHEMES")
        );
    }

    #[test]
    fn file_urls_only_below_the_roots() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let repo = root.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let no_roots = config(&[("REPO_URL_SCHEMES", "https,file")]);
        let e = check_url(&no_roots, &format!("file://{}", repo.display()), true).unwrap_err();
        assert!(e.contains("REPO_FILE_ROOTS"), "{e}");
        // A root given through a symbolic link and with a trailing slash is the same root.
        let link = outside.path().join("root-link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let roots = format!("{}/", link.display());
        let c = config(&[
            ("REPO_URL_SCHEMES", "https,file"),
            ("REPO_FILE_ROOTS", &roots),
        ]);
        assert_eq!(
            c.runs.repo_file_roots,
            [root.path().canonicalize().unwrap()]
        );
        let real = root.path().canonicalize().unwrap();
        check_url(&c, &format!("file://{}", real.join("repo").display()), true).unwrap();
        check_url(&c, &format!("file://localhost{}", real.display()), true).unwrap();
        // A repository that does not exist (yet) below a root: git will say so.
        check_url(
            &c,
            &format!("file://{}/missing/r.git", real.display()),
            true,
        )
        .unwrap();
        for bad in [
            "file:///etc".to_string(),
            "file://etc/passwd".to_string(),
            "file://otherhost/etc".to_string(),
            format!("file://{}/repo/../..", real.display()),
            format!("file://{}/./repo", real.display()),
            format!("file://{}/%2e%2e/x", real.display()),
            format!("file://{}/out", real.display()),
            format!("file://{}/out/x.git", real.display()),
            format!("file://{}", outside.path().display()),
        ] {
            assert!(check_url(&c, &bad, true).is_err(), "{bad}");
        }
        assert!(check_url(&c, &format!("file://{}", real.display()), false).is_ok());
        assert!(check_url(&c, "file:///etc/passwd", false).is_err());
    }

    #[test]
    fn roots_must_exist_and_need_the_file_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let err = |vars: Vec<(&str, &str)>| {
            Config::from_iter(vars.into_iter().map(|(k, v)| (k.into(), v.into())))
                .unwrap_err()
                .to_string()
        };
        assert!(err(vec![("REPO_FILE_ROOTS", &d)]).contains("does not allow file"));
        let e = err(vec![
            ("REPO_URL_SCHEMES", "file"),
            ("REPO_FILE_ROOTS", "relative/dir"),
        ]);
        assert!(e.contains("absolute"), "{e}");
        let missing = format!("{d}/missing");
        let e = err(vec![
            ("REPO_URL_SCHEMES", "file"),
            ("REPO_FILE_ROOTS", &missing),
        ]);
        assert!(e.contains("not an existing directory"), "{e}");
    }

    #[test]
    fn git_environment() {
        let c = config(&[("REPO_URL_SCHEMES", "https,ssh")]);
        let env: std::collections::HashMap<_, _> = git_env(&c).into_iter().collect();
        assert_eq!(env["GIT_HTTP_LOW_SPEED_LIMIT"], "1000");
        assert_eq!(env["GIT_HTTP_LOW_SPEED_TIME"], "30");
        assert_eq!(
            env["GIT_SSH_COMMAND"],
            "ssh -o ConnectTimeout=30 -o BatchMode=yes"
        );
        assert_eq!(env["GIT_ALLOW_PROTOCOL"], "https:ssh");
    }
}
