//! The catalogue: `seed` (idempotent, valid CWL, usable by the CI workflow's request) and
//! `import-fixtures` (keys kept, upsert, dependency order, unknown models, errors, logins).

use crate::common::TestApp;
use application_quality_api::{
    auth::password::{self, Verified},
    catalogue::{fixtures, seed},
    db::entities::{
        command_line_tool, pipeline, pipeline_tool, subworkflow, subworkflow_tag, subworkflow_tool,
        tag, trigger, trigger_type, user,
    },
    pipelines::{PipelineGraph, render},
};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use serde_json::{Value, json};
use std::{collections::BTreeSet, path::PathBuf};

/// Row counts of every catalogue table.
async fn counts(db: &DatabaseConnection) -> [u64; 9] {
    [
        tag::Entity::find().count(db).await.unwrap(),
        command_line_tool::Entity::find().count(db).await.unwrap(),
        subworkflow::Entity::find().count(db).await.unwrap(),
        subworkflow_tag::Entity::find().count(db).await.unwrap(),
        subworkflow_tool::Entity::find().count(db).await.unwrap(),
        pipeline::Entity::find().count(db).await.unwrap(),
        pipeline_tool::Entity::find().count(db).await.unwrap(),
        trigger_type::Entity::find().count(db).await.unwrap(),
        trigger::Entity::find().count(db).await.unwrap(),
    ]
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn seed_is_idempotent_and_reports_pipeline_ids() {
    let app = TestApp::spawn().await;
    let first = seed::seed_catalogue(&app.state.db).await.unwrap();
    assert_eq!((first.updated, first.unchanged), (0, 0));
    assert_eq!(first.created, first.counts.iter().sum::<usize>());
    let names: Vec<&str> = first.pipelines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Notebook static analysis",
            "Python lint",
            "Python pipeline",
            "Notebook execution",
            "Notebook pipeline",
            "Application Package validation"
        ]
    );
    let text = first.to_string();
    for (name, id) in &first.pipelines {
        assert!(text.contains(&format!("{name}: pipeline {id}")), "{text}");
    }
    let before = counts(&app.state.db).await;
    let stamps: Vec<_> = pipeline::Entity::find()
        .order_by_asc(pipeline::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap();

    let second = seed::seed_catalogue(&app.state.db).await.unwrap();
    assert_eq!((second.created, second.updated), (0, 0), "{second}");
    assert_eq!(second.unchanged, first.created);
    assert_eq!(second.pipelines, first.pipelines);
    assert_eq!(counts(&app.state.db).await, before);
    let again: Vec<_> = pipeline::Entity::find()
        .order_by_asc(pipeline::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(again, stamps, "a second seed must not touch any row");

    // A drifted row is put back, and only that row counts as updated.
    let sw = subworkflow::Entity::find_by_id("python_lint_subworkflow".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut active: subworkflow::ActiveModel = sw.into();
    active.name = sea_orm::ActiveValue::Set("Edited".into());
    sea_orm::ActiveModelTrait::update(active, &app.state.db)
        .await
        .unwrap();
    let third = seed::seed_catalogue(&app.state.db).await.unwrap();
    assert_eq!((third.created, third.updated), (0, 1), "{third}");
    let sw = subworkflow::Entity::find_by_id("python_lint_subworkflow".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sw.name, "Python lint");

    // Public, version 0.1, and visible through the API with their subworkflows in order.
    let (_, token) = app.user_with_token("alice", false).await;
    let (status, list) = app.get("/api/pipelines/", Some(&token)).await;
    assert_eq!(status, 200);
    let nb = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Notebook static analysis")
        .expect("demo pipeline listed");
    assert_eq!(nb["version"], "0.1");
    assert_eq!(nb["owner"], Value::Null);
    assert_eq!(
        nb["tools"],
        json!([
            "clone_subworkflow",
            "notebook_validation_subworkflow",
            "ruff_ipynb_subworkflow"
        ])
    );
    let (status, tt) = app.get("/api/triggertypes/", None).await;
    if status == 200 {
        let slugs: BTreeSet<&str> = tt
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["slug"].as_str())
            .collect();
        assert!(slugs.contains("github_webhook_push"), "{tt}");
    }
    let push = trigger_type::Entity::find_by_id("github_webhook_push".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(push.event_type_prefix, "org.eoepca.webhook.github.push");
    assert_eq!((push.status.as_str(), push.available), ("Testing", true));
}

/// Checks a rendered CWL document: parses as YAML, CWL v1.2, unique ids, every `run` resolves
/// to a process of the graph, and every step input source is a workflow input or an output
/// the named step declares.
fn check_cwl(cwl: &str) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(cwl)
        .unwrap_or_else(|e| panic!("rendered CWL is not YAML: {e}\n{cwl}"));
    assert_eq!(doc["cwlVersion"].as_str(), Some("v1.2"));
    let graph = doc["$graph"].as_sequence().expect("$graph list");
    let ids: Vec<&str> = graph.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids in $graph: {ids:?}");
    assert!(unique.contains("main"));
    for process in graph {
        let id = process["id"].as_str().unwrap();
        let class = process["class"].as_str().unwrap();
        assert!(
            ["Workflow", "CommandLineTool", "ExpressionTool"].contains(&class),
            "{id}: {class}"
        );
        assert!(process["inputs"].is_mapping(), "{id}: inputs");
        if class != "Workflow" {
            continue;
        }
        let inputs: BTreeSet<&str> = process["inputs"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        let steps = process["steps"].as_mapping().expect("steps");
        for (name, step) in steps {
            let name = name.as_str().unwrap();
            let run = step["run"].as_str().unwrap();
            let target = run.strip_prefix('#').expect("run refers into the graph");
            let callee = graph
                .iter()
                .find(|p| p["id"].as_str() == Some(target))
                .unwrap_or_else(|| panic!("{id}/{name}: run {run} not in $graph"));
            let callee_inputs = callee["inputs"].as_mapping().unwrap();
            for (input, source) in step["in"].as_mapping().unwrap() {
                let input = input.as_str().unwrap();
                assert!(
                    callee_inputs.contains_key(input),
                    "{id}/{name}: {target} has no input {input}"
                );
                // A source, a list of sources (`{source: [...], linkMerge: ...}`), or a default.
                let sources: Vec<&str> = match (source.as_str(), source.get("source")) {
                    (Some(one), _) => vec![one],
                    (None, Some(many)) => many
                        .as_sequence()
                        .map(|list| list.iter().map(|s| s.as_str().unwrap()).collect())
                        .unwrap_or_else(|| vec![many.as_str().unwrap()]),
                    (None, None) => {
                        assert!(
                            source["default"] != serde_yaml::Value::Null,
                            "{id}/{name}/{input}"
                        );
                        continue;
                    }
                };
                for source in sources {
                    match source.split_once('/') {
                        None => assert!(
                            inputs.contains(source),
                            "{id}/{name}: unknown source {source}"
                        ),
                        Some((from, out)) => {
                            let from_step = &steps[from];
                            let outs: Vec<&str> = from_step["out"]
                                .as_sequence()
                                .unwrap()
                                .iter()
                                .map(|o| o.as_str().unwrap())
                                .collect();
                            assert!(outs.contains(&out), "{id}/{name}: {from} has no out {out}");
                        }
                    }
                }
            }
            // Inputs without a default in the callee must be wired.
            for (input, spec) in callee_inputs {
                // A default, or a type that admits null (`File?`, `['null', ...]`).
                let ty = spec.get("type").unwrap_or(spec);
                let optional = spec.get("default").is_some()
                    || ty.as_str().is_some_and(|t| t.ends_with('?'))
                    || ty
                        .as_sequence()
                        .is_some_and(|u| u.iter().any(|t| t.as_str() == Some("null")));
                assert!(
                    optional || step["in"].get(input).is_some(),
                    "{id}/{name}: required input {input:?} of {target} is not wired"
                );
            }
        }
    }
    doc
}

#[tokio::test]
async fn seeded_pipelines_render_valid_cwl_and_accept_the_ci_request() {
    let app = TestApp::spawn().await;
    let report = seed::seed_catalogue(&app.state.db).await.unwrap();
    for (name, id) in &report.pipelines {
        let p = pipeline::Entity::find_by_id(*id)
            .one(&app.state.db)
            .await
            .unwrap()
            .unwrap();
        let graph = PipelineGraph::load(&app.state.db, p).await.unwrap();
        let cwl = render::render(&graph).unwrap_or_else(|e| panic!("{name}: {e}"));
        let doc = check_cwl(&cwl);
        let main = doc["$graph"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["id"].as_str() == Some("main"))
            .unwrap();
        // Every declared user parameter is a main input with its default.
        for (sw, _) in &graph.subworkflows {
            for (tool, params) in sw.user_params.as_object().unwrap() {
                for (input, spec) in params.as_object().unwrap() {
                    let key = format!("{}.{tool}.{input}", sw.slug);
                    let decl = &main["inputs"][key.as_str()];
                    assert_eq!(decl["type"].as_str(), spec["type"].as_str(), "{key}");
                    let default: Value = serde_json::to_value(&decl["default"]).unwrap();
                    assert_eq!(default, spec["default"], "{key}");
                }
            }
        }
    }

    // The body the reference's CI workflow sends to its notebook pipeline.
    let (_, token) = app.user_with_token("ci", false).await;
    let nb_id = report.pipelines[0].1;
    let body = json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/example/notebooks",
        "repo_branch": "main"
    }}}});
    let (status, run) = app
        .post(
            &format!("/api/pipelines/{nb_id}/runs/"),
            Some(&token),
            &body,
        )
        .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        run["inputs"]["clone_subworkflow.clone.repo_url"],
        "https://github.com/example/notebooks"
    );
    let executed = run["executed_cwl"].as_str().expect("executed_cwl");
    check_cwl(executed);
    assert!(!executed.contains("aqrun_"), "no callback token in the CWL");
    // An input the pipeline does not declare is refused, naming the field.
    let bad = json!({"parameters": {"clone_subworkflow": {"clone": {"repo": "x"}}}});
    let (status, err) = app
        .post(&format!("/api/pipelines/{nb_id}/runs/"), Some(&token), &bad)
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err.to_string().contains("clone_subworkflow.clone.repo"),
        "{err}"
    );
}

#[tokio::test]
async fn import_fixtures_keeps_keys_and_updates_in_place() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let path = fixture("reference-sample.json");
    let summary = fixtures::import_file(db, &path).await.unwrap();
    assert!(
        summary.contains("backend.pipeline 2 (created 2, updated 0)"),
        "{summary}"
    );
    assert!(
        summary.contains("skipped unknown models: backend.pipelinerun (1), sessions.session (1)"),
        "{summary}"
    );

    // Keys kept, links in file order, defaults applied.
    let p17 = pipeline::Entity::find_by_id(17)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p17.name, "Notebook static analysis pipeline");
    assert_eq!(p17.owner_id, None);
    assert_eq!(
        p17.created_at.unwrap().to_rfc3339(),
        "2025-09-16T07:47:34.320+00:00"
    );
    let graph = PipelineGraph::load(db, p17.clone()).await.unwrap();
    let slugs: Vec<&str> = graph
        .subworkflows
        .iter()
        .map(|(s, _)| s.slug.as_str())
        .collect();
    assert_eq!(slugs, ["clone_subworkflow", "line_count_subworkflow"]);
    check_cwl(&render::render(&graph).unwrap());
    let p23 = pipeline::Entity::find_by_id(23)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p23.owner_id, p23.version), (Some(5), None));
    let lc = subworkflow::Entity::find_by_id("line_count_subworkflow".to_string())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lc.status.as_str(), lc.available), ("Stable", true));
    let tags: Vec<i64> = subworkflow_tag::Entity::find()
        .filter(subworkflow_tag::Column::SubworkflowId.eq("clone_subworkflow"))
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.tag_id)
        .collect();
    assert_eq!(BTreeSet::from_iter(tags), BTreeSet::from([11, 12]));
    let t = trigger::Entity::find_by_id("count-on-push".to_string())
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.pipeline_id, t.owner_id), (17, Some(5)));
    assert_eq!(t.trigger_type_id, "sample_push");

    // The imported Django hash is kept verbatim and still verifies.
    let u = user::Entity::find_by_id(5).one(db).await.unwrap().unwrap();
    assert_eq!(u.username, "ci-bot");
    assert!(u.password.starts_with("pbkdf2_sha256$1000$"));
    assert_eq!(
        password::verify("imported-password-1", &u.password),
        Verified::YesRehash
    );
    // ... and logs in through the API, then sees its own private pipeline.
    let token = app.token("ci-bot", "imported-password-1").await;
    let (status, p) = app.get("/api/pipelines/23/", Some(&token)).await;
    assert_eq!(status, 200, "{p}");
    // A run of pipeline 17 with the CI workflow's parameters is accepted.
    let body = json!({"parameters": {"clone_subworkflow": {"clone": {
        "repo_url": "https://github.com/example/notebooks", "repo_branch": "main"}}}});
    let (status, run) = app
        .post("/api/pipelines/17/runs/", Some(&token), &body)
        .await;
    assert_eq!(status, 201, "{run}");

    // New rows get ids after the imported ones (the PostgreSQL sequences were moved).
    let (_, staff) = app.user_with_token("admin", true).await;
    let admin = user::Entity::find()
        .filter(user::Column::Username.eq("admin"))
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        admin.id > 5,
        "new user id {} collides with imports",
        admin.id
    );
    let (status, created) = app
        .post(
            "/api/pipelines/",
            Some(&staff),
            &json!({"name": "After import", "tools": ["clone_subworkflow"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["id"].as_i64().unwrap() > 23, "{created}");

    // Re-importing a changed file updates in place: same keys, same row counts.
    let before = counts(db).await;
    let mut objects: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for o in &mut objects {
        if o["model"] == "backend.pipeline" && o["pk"] == 17 {
            o["fields"]["description"] = json!("Changed");
            o["fields"]["tools"] = json!(["line_count_subworkflow", "clone_subworkflow"]);
        }
        if o["model"] == "backend.tag" && o["pk"] == 11 {
            o["fields"]["name"] = json!("sample: renamed");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.json");
    std::fs::write(&changed, serde_json::to_string(&objects).unwrap()).unwrap();
    let summary = fixtures::import_file(db, &changed).await.unwrap();
    assert!(
        summary.contains("backend.pipeline 2 (created 0, updated 2)"),
        "{summary}"
    );
    assert_eq!(counts(db).await, before);
    let p17 = pipeline::Entity::find_by_id(17)
        .one(db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p17.description.as_deref(), Some("Changed"));
    let order: Vec<String> = pipeline_tool::Entity::find()
        .filter(pipeline_tool::Column::PipelineId.eq(17))
        .order_by_asc(pipeline_tool::Column::Position)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.subworkflow_id)
        .collect();
    assert_eq!(order, ["line_count_subworkflow", "clone_subworkflow"]);
    let t11 = tag::Entity::find_by_id(11).one(db).await.unwrap().unwrap();
    assert_eq!(t11.name, "sample: renamed");
}

#[tokio::test]
async fn import_fixtures_errors_are_precise_and_atomic() {
    let app = TestApp::spawn().await;
    let db = &app.state.db;
    let dir = tempfile::tempdir().unwrap();

    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        "[\n  {\"model\": \"backend.tag\", \"pk\": 1, \"fields\": {\"name\": \"a\"}},\n  {\"model\": \"backend.tag\" \"pk\": 2}\n]\n",
    )
    .unwrap();
    let err = fixtures::import_file(db, &broken)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("{}:3:", broken.display())),
        "file and line expected: {err}"
    );

    // A dangling reference fails the whole file: the valid tag before it is not kept.
    let dangling = dir.path().join("dangling.json");
    std::fs::write(
        &dangling,
        serde_json::to_string(&json!([
            {"model": "backend.tag", "pk": 40, "fields": {"name": "kept?"}},
            {"model": "backend.pipeline", "pk": 41, "fields": {
                "name": "p", "template": "x", "owner": null, "version": "1",
                "tools": ["no_such_subworkflow"]}}
        ]))
        .unwrap(),
    )
    .unwrap();
    let err = fixtures::import_file(db, &dangling).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("backend.pipeline pk 41"), "{text}");
    assert!(tag::Entity::find_by_id(40).one(db).await.unwrap().is_none());
    assert!(
        pipeline::Entity::find_by_id(41)
            .one(db)
            .await
            .unwrap()
            .is_none()
    );

    // A missing required field names it.
    let missing = dir.path().join("missing.json");
    std::fs::write(
        &missing,
        r#"[{"model": "backend.commandlinetool", "pk": "x", "fields": {"name": "X"}}]"#,
    )
    .unwrap();
    let text = format!(
        "{:#}",
        fixtures::import_file(db, &missing).await.unwrap_err()
    );
    assert!(text.contains("\"definition\" is missing"), "{text}");
}

/// Tag names of a subworkflow, as the frontend resolves them (tool tag ids -> `/api/tags/`).
async fn tool_tags(app: &TestApp, slug: &str) -> BTreeSet<String> {
    let (status, tool) = app.get(&format!("/api/tools/{slug}/"), None).await;
    assert_eq!(status, 200, "{tool}");
    let (_, tags) = app.get("/api/tags/", None).await;
    tool["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            tags.as_array()
                .unwrap()
                .iter()
                .find(|t| t["id"] == *id)
                .unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn seeded_catalogue_fits_the_reference_frontend_and_coexists_with_fixtures() {
    let app = TestApp::spawn().await;
    app.seed().await;
    // The frontend finds the set-up step by the reference's tag.
    assert!(
        tool_tags(&app, "clone_subworkflow")
            .await
            .contains("type: init")
    );
    // Its execute form refuses empty text values: every seeded text parameter outside the
    // set-up step (whose URL and branch the form asks for itself) has a default.
    let (_, tools) = app.get("/api/tools/", None).await;
    for t in tools.as_array().unwrap() {
        if t["slug"] == "clone_subworkflow" {
            continue;
        }
        for (step, params) in t["user_params"].as_object().unwrap() {
            for (name, p) in params.as_object().unwrap() {
                if p["type"] == "string" {
                    assert!(
                        p["default"].as_str().is_some_and(|d| !d.is_empty()),
                        "{} {step}.{name} has an empty default",
                        t["slug"]
                    );
                }
            }
        }
    }
    let seeded: Vec<(String, BTreeSet<String>)> = {
        let mut v = Vec::new();
        for t in tools.as_array().unwrap() {
            let slug = t["slug"].as_str().unwrap().to_string();
            let tags = tool_tags(&app, &slug).await;
            v.push((slug, tags));
        }
        v
    };
    let seeded_tags: Vec<(i64, String)> = tag::Entity::find()
        .order_by_asc(tag::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    assert!(
        seeded_tags
            .iter()
            .all(|(id, _)| *id >= seed::SEED_TAG_IDS_FROM)
    );

    // The reference's fixtures number their tags from 1 (its own "type: init" among them):
    // imported after the seed, twice, and the seed run again, nothing is overwritten.
    let fixture = json!([
        {"model": "backend.tag", "pk": 1, "fields": {"name": "type: init"}},
        {"model": "backend.tag", "pk": 2, "fields": {"name": "language: r"}},
        {"model": "backend.subworkflow", "pk": "r_lint_subworkflow", "fields": {
            "name": "R lint", "pipeline_step": "r_lint_step: {}", "definition": "cwlVersion: v1.2",
            "version": "0.1", "tags": [1, 2], "tools": []}},
    ])
    .to_string();
    for _ in 0..2 {
        fixtures::import_str(&app.state.db, "r.json", &fixture)
            .await
            .unwrap();
        app.seed().await;
        for (slug, tags) in &seeded {
            assert_eq!(&tool_tags(&app, slug).await, tags, "{slug}");
        }
        assert_eq!(
            tool_tags(&app, "r_lint_subworkflow").await,
            BTreeSet::from(["type: init".to_string(), "language: r".to_string()])
        );
    }
    let after: Vec<(i64, String)> = tag::Entity::find()
        .filter(tag::Column::Id.gte(seed::SEED_TAG_IDS_FROM))
        .order_by_asc(tag::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    // Seeded tags keep their ids, except the one the fixture has too ("type: init"): the
    // fixture's id wins (its subworkflows name it), and the seeded links moved with it.
    let expected: Vec<(i64, String)> = seeded_tags
        .iter()
        .filter(|(_, name)| name != "type: init")
        .cloned()
        .collect();
    assert_eq!(after, expected);

    // The other order: fixtures first, then the seed.
    let other = TestApp::spawn().await;
    fixtures::import_str(&other.state.db, "r.json", &fixture)
        .await
        .unwrap();
    other.seed().await;
    for (slug, tags) in &seeded {
        assert_eq!(&tool_tags(&other, slug).await, tags, "{slug}");
    }
    assert_eq!(
        tool_tags(&other, "r_lint_subworkflow").await,
        BTreeSet::from(["type: init".to_string(), "language: r".to_string()])
    );
}

/// Every program the demo tools call beside the system's (git, find, sh, curl, python3) is
/// pinned to one version in `scripts/runner-requirements.txt`, which both the local runner's
/// virtualenv and the tools image install, so a pipeline finds the same tools in both places.
#[test]
fn the_demo_tools_programs_are_pinned_for_the_venv_and_the_image() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let pins: Vec<(String, String)> =
        std::fs::read_to_string(root.join("scripts/runner-requirements.txt"))
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (name, version) = l
                    .split_once("==")
                    .unwrap_or_else(|| panic!("{l}: not pinned with =="));
                (name.to_string(), version.to_string())
            })
            .collect();
    let catalogue = seed::catalogue().unwrap();
    for (program, package) in [
        ("ruff check", "ruff"),
        ("bandit --format json", "bandit"),
        ("flake8 --format=json", "flake8-json"),
        ("pylint --output-format json", "pylint"),
        ("papermill.execute_notebook", "papermill"),
        ("papermill.execute_notebook", "ipykernel"),
        ("\"eoap-validator\"", "eoap-validator"),
    ] {
        assert!(
            catalogue
                .command_line_tools
                .iter()
                .any(|t| t.definition.contains(program)),
            "no demo tool calls {program}"
        );
        assert!(
            pins.iter().any(|(name, _)| name == package),
            "{package} is not pinned"
        );
    }
    let dockerfile = std::fs::read_to_string(root.join("scripts/images/tools.Dockerfile")).unwrap();
    assert!(dockerfile.contains("-r /opt/tools/requirements.txt"));
    assert!(dockerfile.contains("COPY runner-requirements.txt"));
    let images = std::fs::read_to_string(root.join("scripts/images.sh")).unwrap();
    assert!(images.contains("-f scripts/images/tools.Dockerfile scripts\n"));
}
