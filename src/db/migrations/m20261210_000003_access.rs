//! Access (issue 20): identities of the identity provider linked to local users by
//! `(issuer, subject)`, signed-out sessions, and the index behind the per-user run limits.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("aq_identity"))
                .col(big_pk_auto(a("id")))
                .col(string_len(a("issuer"), 255))
                .col(string_len(a("subject"), 255))
                .col(big_integer(a("user_id")))
                .col(timestamp_with_time_zone(a("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_aq_identity_user_id")
                        .from(a("aq_identity"), a("user_id"))
                        .to(a("auth_user"), a("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // One account per identity, and one identity per account: two identities can never
        // adopt (or be linked to) the same account, even concurrently.
        m.create_index(
            Index::create()
                .name("ux_identity_issuer_subject")
                .table(a("aq_identity"))
                .col(a("issuer"))
                .col(a("subject"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_identity_user_id")
                .table(a("aq_identity"))
                .col(a("user_id"))
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("aq_revoked_session"))
                .col(string_len(a("session_id"), 64).primary_key())
                .col(timestamp_with_time_zone(a("expires_at")))
                .col(timestamp_with_time_zone(a("revoked_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_revoked_session_expires_at")
                .table(a("aq_revoked_session"))
                .col(a("expires_at"))
                .to_owned(),
        )
        .await?;
        // A user's unfinished runs are counted on every run request: one index range, however
        // many finished runs the user has.
        m.create_index(
            Index::create()
                .name("ix_pipelinerun_started_by_status")
                .table(a("backend_pipelinerun"))
                .col(a("started_by_id"))
                .col(a("status"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_pipelinerun_started_by_status")
                .table(a("backend_pipelinerun"))
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(a("aq_revoked_session")).to_owned())
            .await?;
        m.drop_table(Table::drop().table(a("aq_identity")).to_owned())
            .await?;
        Ok(())
    }
}
