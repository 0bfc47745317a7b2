//! Presence shared between replicas (PostgreSQL): who views or edits which record on each replica.
//!
//! Every replica keeps rows for the participants of its own streams, refreshed by a heartbeat and expiring
//! shortly after it stops (a replica that dies leaves presence on its own), and announces each change on a
//! notification channel so the other replicas merge it into what their watchers see.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

use super::Store;
use crate::{
    domain::change::ResourceKind,
    error::{Error, Result},
};

/// PostgreSQL channel announcing presence changes: payload `replica|resource_type|resource_id`.
pub const PRESENCE_CHANNEL: &str = "customer_context_presence";

/// PostgreSQL channel relaying screen-pops between replicas: payload `replica|agent|base64 of the
/// InteractionRouted message`.
pub const ROUTED_CHANNEL: &str = "customer_context_routed";

/// A record's participants on one replica: `(agent, editing)`.
pub type Participants = Vec<(String, bool)>;

fn parse_kind(text: &str) -> Option<ResourceKind> {
    ResourceKind::parse(text)
}

/// Parses a presence notification payload into `(replica, kind, id)`.
pub fn parse_notification(payload: &str) -> Option<(&str, ResourceKind, &str)> {
    let mut parts = payload.splitn(3, '|');
    let replica = parts.next()?;
    let kind = parse_kind(parts.next()?)?;
    let id = parts.next()?;
    Some((replica, kind, id))
}

impl Store {
    fn shares_presence(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Replaces this replica's participants of one record and tells the other replicas.
    pub async fn publish_presence(
        &self,
        replica: &str,
        kind: ResourceKind,
        id: &str,
        participants: &Participants,
        expires_at: i64,
    ) -> Result<()> {
        if !self.shares_presence() {
            return Ok(());
        }
        let txn = self.begin_write("publish_presence").await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM presence WHERE replica_id = $1 AND resource_type = $2 AND resource_id = $3",
            [replica.into(), kind.as_str().into(), id.into()],
        ))
        .await?;
        for (agent, editing) in participants {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO presence (replica_id, resource_type, resource_id, agent, editing, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    replica.into(),
                    kind.as_str().into(),
                    id.into(),
                    agent.as_str().into(),
                    (*editing).into(),
                    expires_at.into(),
                ],
            ))
            .await?;
        }
        notify(&txn, replica, kind, id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Participants of one record on the other replicas, still alive at `now`.
    pub async fn remote_presence(
        &self,
        replica: &str,
        kind: ResourceKind,
        id: &str,
        now: i64,
    ) -> Result<Participants> {
        if !self.shares_presence() {
            return Ok(Vec::new());
        }
        let rows = self
            .read
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT agent, editing FROM presence \
                 WHERE resource_type = $1 AND resource_id = $2 AND replica_id <> $3 AND expires_at > $4",
                [kind.as_str().into(), id.into(), replica.into(), now.into()],
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    row.try_get::<String>("", "agent").map_err(Error::from)?,
                    row.try_get::<bool>("", "editing").map_err(Error::from)?,
                ))
            })
            .collect()
    }

    /// Keeps this replica's rows alive until `expires_at`.
    pub async fn refresh_presence(&self, replica: &str, expires_at: i64) -> Result<()> {
        if !self.shares_presence() {
            return Ok(());
        }
        self.write
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE presence SET expires_at = $2 WHERE replica_id = $1",
                [replica.into(), expires_at.into()],
            ))
            .await?;
        Ok(())
    }

    /// Removes rows that expired before `now` (replicas that died) and announces the records they were about.
    pub async fn expire_presence(&self, now: i64) -> Result<()> {
        self.remove_presence("expires_at < $1", now.into()).await
    }

    /// Removes every row of this replica (on shutdown) and announces the records they were about.
    pub async fn withdraw_presence(&self, replica: &str) -> Result<()> {
        self.remove_presence("replica_id = $1", replica.into())
            .await
    }

    async fn remove_presence(&self, condition: &str, value: Value) -> Result<()> {
        if !self.shares_presence() {
            return Ok(());
        }
        let txn = self.begin_write("remove_presence").await?;
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "DELETE FROM presence WHERE {condition} RETURNING replica_id, resource_type, resource_id"
                ),
                [value],
            ))
            .await?;
        let mut announced = std::collections::HashSet::new();
        for row in rows {
            let replica: String = row.try_get("", "replica_id")?;
            let kind: String = row.try_get("", "resource_type")?;
            let id: String = row.try_get("", "resource_id")?;
            if let Some(kind) = parse_kind(&kind)
                && announced.insert((replica.clone(), kind, id.clone()))
            {
                notify(&txn, &replica, kind, &id).await?;
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// A PostgreSQL connection listening for presence changes of every replica; None on SQLite.
    pub async fn presence_listener(&self) -> Result<Option<sea_orm::sqlx::postgres::PgListener>> {
        if !self.shares_presence() {
            return Ok(None);
        }
        self.listener(PRESENCE_CHANNEL).await.map(Some)
    }

    /// Tells the other replicas about a screen-pop (`payload` as [`ROUTED_CHANNEL`] describes).
    pub async fn announce_routed(&self, payload: String) -> Result<()> {
        self.write
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [ROUTED_CHANNEL.into(), payload.into()],
            ))
            .await?;
        Ok(())
    }

    /// A connection listening for the other replicas' screen-pops; None on SQLite.
    pub async fn routed_listener(&self) -> Result<Option<sea_orm::sqlx::postgres::PgListener>> {
        if !self.shares_presence() {
            return Ok(None);
        }
        self.listener(ROUTED_CHANNEL).await.map(Some)
    }
}

async fn notify(
    db: &impl ConnectionTrait,
    replica: &str,
    kind: ResourceKind,
    id: &str,
) -> Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [
            PRESENCE_CHANNEL.into(),
            format!("{replica}|{}|{id}", kind.as_str()).into(),
        ],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_replica_and_record() {
        assert_eq!(
            parse_notification("r1|customer|0190-x"),
            Some(("r1", ResourceKind::Customer, "0190-x"))
        );
        assert_eq!(parse_notification("r1|nonsense|x"), None);
        assert_eq!(parse_notification("garbage"), None);
    }
}
