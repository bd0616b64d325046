//! Quality verdicts: digests of job reports and runs, quality rules of pipelines, the outbox of
//! commit statuses, and (PostgreSQL only) the four views the Grafana dashboards read.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

/// The dashboards' views. `SELECT *` is avoided on purpose: the reference's views froze the
/// columns of their day, so columns added later never reached Grafana.
const VIEWS: &str = r#"
CREATE VIEW executions_admin AS
SELECT p.name AS pipeline_name, r.id, r.usage_report, r.start_time, r.completion_time, r.status,
       u.username AS "user", r.inputs, r.output, r.executed_cwl, r.pipeline_id, r.started_by_id,
       CASE WHEN jsonb_typeof(r.usage_report->'total_tasks') = 'number'
            THEN (r.usage_report->>'total_tasks')::numeric::int END AS total_tasks,
       CASE WHEN jsonb_typeof(r.usage_report->'total_cpu_hours') = 'number'
            THEN (r.usage_report->>'total_cpu_hours')::float END AS total_cpu_hours,
       CASE WHEN jsonb_typeof(r.usage_report->'elapsed_hours') = 'number'
            THEN (r.usage_report->>'elapsed_hours')::float END AS elapsed_hours,
       CASE WHEN jsonb_typeof(r.usage_report->'total_disk_megabytes') = 'number'
            THEN (r.usage_report->>'total_disk_megabytes')::float END AS total_disk_megabytes,
       CASE WHEN jsonb_typeof(r.usage_report->'total_ram_megabyte_hours') = 'number'
            THEN (r.usage_report->>'total_ram_megabyte_hours')::float END AS total_ram_megabyte_hours,
       r.digest,
       CASE WHEN jsonb_typeof(r.digest) = 'object' AND r.digest <> '{}'::jsonb
            THEN COALESCE(r.digest->>'digest_quality', 'undefined') ELSE 'undefined' END
         AS digest_quality
FROM backend_pipelinerun r
JOIN backend_pipeline p ON p.id = r.pipeline_id
LEFT JOIN auth_user u ON u.id = r.started_by_id;

CREATE VIEW executions AS
SELECT * FROM executions_admin WHERE "user" = SESSION_USER;

CREATE VIEW reports_admin AS
SELECT j.id, j.name, j.output, j.created_at, j.run_id, r.started_by_id, j.instance, j.digest,
       u.username AS "user"
FROM backend_jobreport j
JOIN backend_pipelinerun r ON r.id = j.run_id
LEFT JOIN auth_user u ON u.id = r.started_by_id;

CREATE VIEW reports AS
SELECT * FROM reports_admin WHERE "user" = SESSION_USER;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(a("backend_pipelinerun"))
                .add_column(json_binary(a("digest")).default("\"\""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("backend_jobreport"))
                .add_column(json_binary(a("digest")).default("{}"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("backend_pipeline"))
                .add_column(json_binary_null(a("quality_rules")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("aq_commit_status"))
                .col(big_pk_auto(a("id")))
                .col(big_integer_null(a("run_id")))
                .col(string_len(a("forge"), 10))
                .col(string_len(a("api_url"), 255))
                .col(string_len(a("repository"), 255))
                .col(string_len(a("token_scope"), 255))
                .col(string_len(a("sha"), 64))
                .col(string_len(a("context"), 255))
                .col(string_len(a("state"), 20))
                .col(string_len(a("description"), 255))
                .col(text_null(a("target_url")))
                .col(string_len(a("outcome"), 20))
                .col(integer(a("attempts")).default(0))
                .col(timestamp_with_time_zone(a("next_attempt_at")))
                .col(timestamp_with_time_zone_null(a("lease_until")))
                .col(text_null(a("last_error")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone_null(a("delivered_at")))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_aq_commit_status_run_id")
                        .from(a("aq_commit_status"), a("run_id"))
                        .to(a("backend_pipelinerun"), a("id"))
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_commit_status_due")
                .table(a("aq_commit_status"))
                .col(a("outcome"))
                .col(a("next_attempt_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_commit_status_run")
                .table(a("aq_commit_status"))
                .col(a("run_id"))
                .to_owned(),
        )
        .await?;
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            m.get_connection().execute_unprepared(VIEWS).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            m.get_connection()
                .execute_unprepared(
                    "DROP VIEW IF EXISTS reports; DROP VIEW IF EXISTS reports_admin; \
                     DROP VIEW IF EXISTS executions; DROP VIEW IF EXISTS executions_admin;",
                )
                .await?;
        }
        m.drop_table(Table::drop().table(a("aq_commit_status")).to_owned())
            .await?;
        for (table, column) in [
            ("backend_pipeline", "quality_rules"),
            ("backend_jobreport", "digest"),
            ("backend_pipelinerun", "digest"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(a(table))
                    .drop_column(a(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
