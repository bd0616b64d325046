//! The whole domain in one migration: users, catalogue, runs, reports, triggers, received events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn fk(
    from_table: &str,
    from_col: &str,
    to_table: &str,
    to_col: &str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{from_table}_{from_col}"))
        .from(Alias::new(from_table), Alias::new(from_col))
        .to(Alias::new(to_table), Alias::new(to_col))
        .on_delete(on_delete)
        .to_owned()
}

fn unique(table: &str, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table)).unique();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.to_owned()
}

fn index(table: &str, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(Alias::new(table));
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.to_owned()
}

fn t(name: &str) -> TableCreateStatement {
    Table::create().table(Alias::new(name)).to_owned()
}

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, SetNull};
        let tables = [
            t("auth_user")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("username"), 150))
                .col(text(a("password")))
                .col(string_len(a("email"), 254).default(""))
                .col(boolean(a("is_staff")).default(false))
                .col(boolean(a("is_active")).default(true))
                .col(timestamp_with_time_zone(a("date_joined")))
                .to_owned(),
            t("aq_setting")
                .col(string_len(a("key"), 100).primary_key())
                .col(text(a("value")))
                .to_owned(),
            t("backend_tag")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("name"), 50))
                .to_owned(),
            t("backend_commandlinetool")
                .col(string_len(a("slug"), 50).primary_key())
                .col(string_len(a("name"), 50))
                .col(text(a("definition")))
                .col(string_len_null(a("version"), 50))
                .to_owned(),
            t("backend_subworkflow")
                .col(string_len(a("slug"), 50).primary_key())
                .col(string_len(a("name"), 50))
                .col(text_null(a("description")))
                .col(text(a("pipeline_step")))
                .col(text(a("definition")))
                .col(json_binary(a("user_params")))
                .col(string_len(a("version"), 50))
                .col(string_len(a("status"), 20).default("Stable"))
                .col(boolean(a("available")).default(true))
                .to_owned(),
            t("backend_subworkflow_tags")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("subworkflow_id"), 50))
                .col(big_integer(a("tag_id")))
                .foreign_key(&mut fk(
                    "backend_subworkflow_tags",
                    "subworkflow_id",
                    "backend_subworkflow",
                    "slug",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_subworkflow_tags",
                    "tag_id",
                    "backend_tag",
                    "id",
                    Cascade,
                ))
                .to_owned(),
            t("backend_subworkflow_tools")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("subworkflow_id"), 50))
                .col(string_len(a("commandlinetool_id"), 50))
                .foreign_key(&mut fk(
                    "backend_subworkflow_tools",
                    "subworkflow_id",
                    "backend_subworkflow",
                    "slug",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_subworkflow_tools",
                    "commandlinetool_id",
                    "backend_commandlinetool",
                    "slug",
                    Cascade,
                ))
                .to_owned(),
            t("backend_pipeline")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("name"), 50))
                .col(text_null(a("description")))
                .col(text(a("template")))
                .col(string_len_null(a("version"), 50))
                .col(big_integer_null(a("owner_id")))
                .col(timestamp_with_time_zone_null(a("created_at")))
                .col(timestamp_with_time_zone_null(a("edited_at")))
                .col(json_binary_null(a("default_inputs")))
                .foreign_key(&mut fk(
                    "backend_pipeline",
                    "owner_id",
                    "auth_user",
                    "id",
                    Cascade,
                ))
                .to_owned(),
            t("backend_pipeline_tools")
                .col(big_pk_auto(a("id")))
                .col(big_integer(a("pipeline_id")))
                .col(string_len(a("subworkflow_id"), 50))
                .col(integer(a("position")).default(0))
                .foreign_key(&mut fk(
                    "backend_pipeline_tools",
                    "pipeline_id",
                    "backend_pipeline",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_pipeline_tools",
                    "subworkflow_id",
                    "backend_subworkflow",
                    "slug",
                    Cascade,
                ))
                .to_owned(),
            t("backend_pipelinerun")
                .col(big_pk_auto(a("id")))
                .col(big_integer(a("pipeline_id")))
                .col(json_binary(a("usage_report")))
                .col(timestamp_with_time_zone(a("start_time")))
                .col(timestamp_with_time_zone_null(a("completion_time")))
                .col(string_len(a("status"), 100))
                .col(text_null(a("status_message")))
                .col(json_binary_null(a("inputs")))
                .col(json_binary_null(a("parameters")))
                .col(json_binary_null(a("output")))
                .col(text_null(a("executed_cwl")))
                .col(big_integer_null(a("started_by_id")))
                .col(string_len_null(a("triggered_by"), 50))
                .col(string_len_null(a("callback_token_hash"), 64))
                .col(string_len_null(a("k8s_namespace"), 63))
                .col(string_len_null(a("k8s_job_name"), 63))
                .col(timestamp_with_time_zone_null(a("launched_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .foreign_key(&mut fk(
                    "backend_pipelinerun",
                    "pipeline_id",
                    "backend_pipeline",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_pipelinerun",
                    "started_by_id",
                    "auth_user",
                    "id",
                    SetNull,
                ))
                .to_owned(),
            t("backend_jobreport")
                .col(big_pk_auto(a("id")))
                .col(big_integer(a("run_id")))
                .col(string_len(a("name"), 50))
                .col(string_len(a("instance"), 200).default(""))
                .col(timestamp_with_time_zone_null(a("created_at")))
                .col(json_binary(a("output")))
                .foreign_key(&mut fk(
                    "backend_jobreport",
                    "run_id",
                    "backend_pipelinerun",
                    "id",
                    Cascade,
                ))
                .to_owned(),
            t("backend_triggertype")
                .col(string_len(a("slug"), 50).primary_key())
                .col(string_len(a("name"), 100))
                .col(text(a("description")))
                .col(string_len(a("event_type_prefix"), 100))
                .col(json_binary(a("data")))
                .col(string_len(a("status"), 20).default("Enabled"))
                .col(boolean(a("available")).default(true))
                .to_owned(),
            t("backend_trigger")
                .col(string_len(a("slug"), 50).primary_key())
                .col(text_null(a("description")))
                .col(json_binary(a("cql2_filter")))
                .col(json_binary(a("params_default")))
                .col(json_binary(a("params_mapping")))
                .col(string_len(a("trigger_type_id"), 50))
                .col(big_integer(a("pipeline_id")))
                .col(big_integer_null(a("owner_id")))
                .col(string_len(a("status"), 20).default("Enabled"))
                .col(boolean(a("enabled")).default(true))
                .foreign_key(&mut fk(
                    "backend_trigger",
                    "trigger_type_id",
                    "backend_triggertype",
                    "slug",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_trigger",
                    "pipeline_id",
                    "backend_pipeline",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_trigger",
                    "owner_id",
                    "auth_user",
                    "id",
                    Cascade,
                ))
                .to_owned(),
            t("aq_received_event")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("source"), 255))
                .col(string_len(a("event_id"), 255))
                .col(string_len(a("event_type"), 255))
                .col(string_len_null(a("subject"), 255))
                .col(timestamp_with_time_zone_null(a("event_time")))
                .col(string_len_null(a("user"), 150))
                .col(json_binary_null(a("data")))
                .col(json_binary(a("headers")))
                .col(string_len(a("outcome"), 20))
                .col(text_null(a("message")))
                .col(json_binary(a("run_ids")))
                .col(big_integer_null(a("pipeline_id")))
                .col(timestamp_with_time_zone(a("received_at")))
                .to_owned(),
            t("backend_triggerevent")
                .col(big_pk_auto(a("id")))
                .col(string_len(a("trigger_id"), 50))
                .col(big_integer_null(a("received_event_id")))
                .col(string_len(a("source"), 255))
                .col(timestamp_with_time_zone(a("event_time")))
                .col(string_len(a("event_type"), 255))
                .col(json_binary_null(a("event_headers")))
                .col(json_binary_null(a("event_body")))
                .col(big_integer_null(a("pipeline_run_id")))
                .foreign_key(&mut fk(
                    "backend_triggerevent",
                    "trigger_id",
                    "backend_trigger",
                    "slug",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_triggerevent",
                    "received_event_id",
                    "aq_received_event",
                    "id",
                    Cascade,
                ))
                .foreign_key(&mut fk(
                    "backend_triggerevent",
                    "pipeline_run_id",
                    "backend_pipelinerun",
                    "id",
                    SetNull,
                ))
                .to_owned(),
        ];
        for table in tables {
            m.create_table(table).await?;
        }
        let indexes = [
            unique("auth_user", "uq_auth_user_username", &["username"]),
            unique("backend_tag", "uq_backend_tag_name", &["name"]),
            unique(
                "backend_subworkflow_tags",
                "uq_subworkflow_tag",
                &["subworkflow_id", "tag_id"],
            ),
            unique(
                "backend_subworkflow_tools",
                "uq_subworkflow_tool",
                &["subworkflow_id", "commandlinetool_id"],
            ),
            unique(
                "backend_pipeline",
                "unique_name_owner_version",
                &["name", "owner_id", "version"],
            ),
            unique(
                "backend_pipeline_tools",
                "uq_pipeline_subworkflow",
                &["pipeline_id", "subworkflow_id"],
            ),
            index(
                "backend_pipelinerun",
                "ix_pipelinerun_pipeline",
                &["pipeline_id"],
            ),
            index(
                "backend_pipelinerun",
                "ix_pipelinerun_started_by",
                &["started_by_id"],
            ),
            unique(
                "backend_jobreport",
                "uq_jobreport_run_name_instance",
                &["run_id", "name", "instance"],
            ),
            index("backend_trigger", "ix_trigger_type", &["trigger_type_id"]),
            unique(
                "aq_received_event",
                "uq_received_event_source_id",
                &["source", "event_id"],
            ),
            index(
                "aq_received_event",
                "ix_received_event_received_at",
                &["received_at"],
            ),
            index(
                "backend_triggerevent",
                "ix_triggerevent_trigger",
                &["trigger_id"],
            ),
        ];
        for idx in indexes {
            m.create_index(idx).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "backend_triggerevent",
            "aq_received_event",
            "backend_trigger",
            "backend_triggertype",
            "backend_jobreport",
            "backend_pipelinerun",
            "backend_pipeline_tools",
            "backend_pipeline",
            "backend_subworkflow_tools",
            "backend_subworkflow_tags",
            "backend_subworkflow",
            "backend_commandlinetool",
            "backend_tag",
            "aq_setting",
            "auth_user",
        ] {
            m.drop_table(Table::drop().table(Alias::new(name)).to_owned())
                .await?;
        }
        Ok(())
    }
}
