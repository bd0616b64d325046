//! CWL rendering with minijinja, compatible with the reference's stored Jinja templates:
//! each subworkflow `definition` is rendered with its `tools`, then the pipeline `template` with
//! `subworkflows` (`slug`, `definition`, `pipeline_step`, `user_params` with the pipeline's
//! `default_inputs` merged in). Python-style `dict.items()` works through minijinja's pycompat.
//!
//! Templates are data (staff-edited, or imported from fixtures), so a render is bounded: at most
//! [`MAX_RENDER_FUEL`] template instructions and [`MAX_RENDER_BYTES`] of output per template.
//! Without these, two nested `range(99999)` loops held a launch for hours (found by fuzzing).
//!
//! The `*` and `**` operators are refused in template code ([`check_template`]): minijinja
//! repeats a sequence or a string up to 100 million times in one instruction that uses no
//! fuel, so `{{ 4 * 8 ** 8 * subworkflows }}` spent 19 s (and printing it gigabytes of clones)
//! inside a single step (found by fuzzing). No reference template uses either operator.

use super::PipelineGraph;
use minijinja::{Environment, context};
use serde_json::{Value, json};
use std::io;

/// Most template instructions one render may execute. Real pipeline templates need a few
/// thousand; this stops a runaway loop within a fraction of a second.
pub const MAX_RENDER_FUEL: u64 = 250_000;
/// Largest output of one rendered template (bytes). CWL documents are a few kilobytes.
pub const MAX_RENDER_BYTES: usize = 8 * 1024 * 1024;

/// A template could not be rendered; the run fails with this message.
#[derive(Debug, thiserror::Error)]
#[error("CWL template error in {what}: {detail}")]
pub struct RenderError {
    pub what: String,
    pub detail: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // minijinja 3.1's printf/`str.format` parser slices `%(key)` / `{key}` byte by byte and
    // panics on a multi-byte key (found by fuzzing); no reference template formats strings.
    env.remove_filter("format");
    env.set_unknown_method_callback(|state, value, method, args| {
        if method == "format" {
            return Err(minijinja::Error::new(
                minijinja::ErrorKind::UnknownMethod,
                "str.format() is not available in CWL templates",
            ));
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
    env.set_fuel(Some(MAX_RENDER_FUEL));
    env
}

/// Collects output up to [`MAX_RENDER_BYTES`], then refuses to write more.
struct BoundedOutput(Vec<u8>);

impl io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_RENDER_BYTES {
            return Err(io::Error::other(format!(
                "the output is larger than {MAX_RENDER_BYTES} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks `source` when a template is saved: valid Jinja and the render rules of
/// [`check_rules`] (the handler answers 400 naming the problem).
pub fn check_template(source: &str) -> Result<(), minijinja::Error> {
    check_rules(source)?;
    Environment::new().template_from_str(source).map(drop)
}

/// The render rules, checked on the tokens: no `*` or `**` operator, no `| format` filter or
/// `.format()` method.
fn check_rules(source: &str) -> Result<(), minijinja::Error> {
    use minijinja::machinery::{Token, tokenize};
    let refuse = |what: String, line: u16| {
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{what} is not allowed in CWL templates (line {line})"),
        ))
    };
    let mut after_pipe_or_dot = false;
    for token in tokenize(source, false, Default::default()) {
        let (token, span) = token?;
        match token {
            Token::Mul | Token::Pow => {
                return refuse(format!("the {token} operator"), span.start_line);
            }
            Token::Ident("format") if after_pipe_or_dot => {
                return refuse("string formatting (`format`)".into(), span.start_line);
            }
            _ => {}
        }
        after_pipe_or_dot = matches!(token, Token::Pipe | Token::Dot);
    }
    Ok(())
}

/// Renders one template with the render bounds.
fn render_bounded(
    env: &Environment<'_>,
    source: &str,
    ctx: minijinja::Value,
) -> Result<String, minijinja::Error> {
    // The rules here; the one compilation happens in the render itself.
    check_rules(source)?;
    render_guarded(env, source, ctx)
}

/// Renders without the source check, turning an engine panic into an error.
fn render_guarded(
    env: &Environment<'_>,
    source: &str,
    ctx: minijinja::Value,
) -> Result<String, minijinja::Error> {
    let mut out = BoundedOutput(Vec::new());
    // minijinja 3.1 panics on some inputs (the `format` filter slicing a multi-byte character,
    // found by fuzzing): a template bug must fail its run, not the request that launches it.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.template_from_str(source)?
            .render_captured_to(ctx, &mut out)
            .map(drop)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown cause");
        Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("the template engine failed: {why}"),
        ))
    })?;
    // The engine writes only what templates produce, which is UTF-8 text.
    Ok(String::from_utf8_lossy(&out.0).into_owned())
}

/// `user_params` of a subworkflow with `default_inputs[slug][tool][input]["default"]` applied.
pub fn merged_user_params(
    user_params: &Value,
    slug: &str,
    default_inputs: Option<&Value>,
) -> Value {
    let mut merged = user_params.clone();
    let Some(overrides) = default_inputs
        .and_then(|d| d.get(slug))
        .and_then(Value::as_object)
    else {
        return merged;
    };
    for (tool, inputs) in overrides {
        for (input, spec) in inputs.as_object().into_iter().flatten() {
            if let (Some(default), Some(target)) = (
                spec.get("default"),
                merged
                    .get_mut(tool)
                    .and_then(|t| t.get_mut(input))
                    .and_then(Value::as_object_mut),
            ) {
                target.insert("default".into(), default.clone());
            }
        }
    }
    merged
}

/// Renders the pipeline's CWL document.
pub fn render(graph: &PipelineGraph) -> Result<String, RenderError> {
    // User data reaches the templates only through these defaults: whatever stored them,
    // a map, a misplaced list or a `$` key is refused before any template sees it.
    if let Some(defaults) = &graph.pipeline.default_inputs {
        let errors = super::params::check_default_inputs(
            &super::params::declared_inputs(graph),
            defaults,
            None,
        );
        if let Some((field, msgs)) = errors.into_iter().next() {
            return Err(RenderError {
                what: format!("pipeline {}", graph.pipeline.id),
                detail: format!("refused {field}: {}", msgs.join(" ")),
            });
        }
    }
    let env = environment();
    let mut subworkflows = Vec::with_capacity(graph.subworkflows.len());
    for (sw, tools) in &graph.subworkflows {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"slug": t.slug, "name": t.name, "definition": t.definition, "version": t.version}))
            .collect();
        let definition = render_bounded(
            &env,
            &sw.definition,
            context! { tools => minijinja::value::Serde(&tools) },
        )
        .map_err(|e| RenderError {
            what: format!("subworkflow {:?}", sw.slug),
            detail: describe(&e),
        })?;
        subworkflows.push(json!({
            "slug": sw.slug,
            "name": sw.name,
            "definition": definition,
            "pipeline_step": sw.pipeline_step,
            "user_params": merged_user_params(&sw.user_params, &sw.slug, graph.pipeline.default_inputs.as_ref()),
        }));
    }
    render_bounded(
        &env,
        &graph.pipeline.template,
        context! { subworkflows => minijinja::value::Serde(&subworkflows) },
    )
    .map_err(|e| RenderError {
        what: format!("pipeline {}", graph.pipeline.id),
        detail: describe(&e),
    })
}

fn describe(e: &minijinja::Error) -> String {
    // A refused write carries our reason as the source error.
    let text = match (e.kind(), std::error::Error::source(e)) {
        (minijinja::ErrorKind::WriteFailure, Some(why)) => format!("{e}: {why}"),
        _ => e.to_string(),
    };
    match e.line() {
        Some(line) => format!("{text} (line {line})"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_overrides_only_defaults() {
        let up = json!({"filter": {"regex": {"type": "string", "default": ".*"}}});
        let di =
            json!({"sw": {"filter": {"regex": {"default": ".*\\.py"}, "nope": {"default": 1}}}});
        let m = merged_user_params(&up, "sw", Some(&di));
        assert_eq!(
            m,
            json!({"filter": {"regex": {"type": "string", "default": ".*\\.py"}}})
        );
        assert_eq!(merged_user_params(&up, "other", Some(&di)), up);
    }

    #[test]
    fn renders_are_bounded() {
        let env = environment();
        let ok = render_bounded(&env, "{{ x }}-{{ 1 + 1 }}", context! { x => "a" }).unwrap();
        assert_eq!(ok, "a-2");
        let e = render_bounded(
            &env,
            "{% for a in range(99999) %}{% for b in range(99999) %}x{% endfor %}{% endfor %}",
            context! {},
        )
        .unwrap_err();
        assert_eq!(e.kind(), minijinja::ErrorKind::OutOfFuel);
        let e = render_bounded(
            &env,
            "{% for a in range(10000) %}{{ big }}{% endfor %}",
            context! { big => "x".repeat(1000) },
        )
        .unwrap_err();
        assert!(describe(&e).contains("larger than"), "{}", describe(&e));
    }

    #[test]
    fn string_formatting_is_unavailable_and_engine_panics_fail_the_render() {
        // `format` walks a `%(key)` byte by byte in minijinja 3.1: a multi-byte key panics.
        let source = "{{ '%(\u{32c6})s' | format(a=1) }}";
        let e = render_bounded(&environment(), source, context! {}).unwrap_err();
        assert!(
            describe(&e).contains("string formatting"),
            "{}",
            describe(&e)
        );
        // Past the source check, the environment itself has no string formatting.
        let e = render_guarded(&environment(), source, context! {}).unwrap_err();
        assert!(describe(&e).contains("unknown filter"), "{}", describe(&e));
        let method = "{{ '{\u{32c6}}'.format(a=1) }}";
        let e = render_guarded(&environment(), method, context! {}).unwrap_err();
        assert!(describe(&e).contains("not available"), "{}", describe(&e));
        // Should another engine bug panic, the render fails instead of the caller.
        let e = render_guarded(&Environment::new(), source, context! {}).unwrap_err();
        assert!(
            describe(&e).contains("template engine failed"),
            "{}",
            describe(&e)
        );
    }

    #[test]
    fn repetition_operators_are_refused() {
        for source in [
            "{{ 4 * 8 ** 8 * subworkflows }}",
            "a\n{% set n = 2 ** 3 %}",
            "{{ 'x' * 3 }}",
        ] {
            let e = check_template(source).unwrap_err();
            assert!(e.to_string().contains("not allowed"), "{source}: {e}");
        }
        // Stars outside template code are text.
        check_template("glob: '*.py' # ** {{ a }} format").unwrap();
        check_template("{{ format }}{{ x.formats }}").unwrap();
        for source in ["{{ 'a' | format(1) }}", "{{ '{}'.format(1) }}"] {
            let e = check_template(source).unwrap_err();
            assert!(e.to_string().contains("string formatting"), "{source}: {e}");
        }
        let e = render_bounded(&environment(), "{{ [1] * 3 }}", context! {}).unwrap_err();
        assert!(describe(&e).contains("`*` operator"), "{}", describe(&e));
    }
}
