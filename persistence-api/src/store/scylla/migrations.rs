//! Migrations of the ScyllaDB store: the CQL files of `migrations/`, built
//! into the binary. Versions share one sequence with the embedded store's
//! migrations, so one number names one logical schema whatever the backend
//! (`migrations/README.md`).
//!
//! Cassandra has no transactional DDL, so each file is a list of idempotent
//! statements (`IF NOT EXISTS`) and its version is recorded in
//! `schema_migrations` after the last of them succeeded: a run that stops
//! half-way is run again from the start of the file, and changes nothing
//! that was already there. The driver waits for schema agreement after each
//! DDL statement. Cassandra handles concurrent DDL of one table from several
//! coordinators badly, so on a multi-node cluster run `chat migrate` once
//! before starting several persistence APIs (each one then finds the schema
//! current and changes nothing).

use scylla::client::session::Session;

use super::{ScyllaConfig, engine_error};
use crate::store::{StoreError, StoreResult};

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// CQL with `${keyspace}` and `${replication}` to substitute.
    pub cql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial layout: apps, tokens, chats, subscriptions both ways, messages",
        cql: include_str!("../../../../migrations/0001_initial.cql"),
    },
    Migration {
        version: 2,
        name: "read positions",
        cql: include_str!("../../../../migrations/0002_read_positions.cql"),
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The statements of a migration file: comments dropped, split at `;`,
/// parameters substituted.
pub fn statements(cql: &str, config: &ScyllaConfig) -> Vec<String> {
    let text: String = cql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|statement| !statement.is_empty())
        .map(|statement| {
            statement
                .replace("${keyspace}", &config.keyspace)
                .replace("${replication}", &config.replication)
        })
        .collect()
}

/// The highest version recorded in the keyspace; 0 when it has no
/// `schema_migrations` table (a new keyspace).
pub async fn applied_version(session: &Session, keyspace: &str) -> StoreResult<u32> {
    let exists = session
        .prepare(
            "SELECT table_name FROM system_schema.tables \
             WHERE keyspace_name = ? AND table_name = 'schema_migrations'",
        )
        .await
        .map_err(engine_error)?;
    let found = session
        .execute_unpaged(&exists, (keyspace,))
        .await
        .map_err(engine_error)?
        .into_rows_result()
        .map_err(engine_error)?
        .rows_num();
    if found == 0 {
        return Ok(0);
    }
    let versions = session
        .prepare(format!("SELECT version FROM {keyspace}.schema_migrations"))
        .await
        .map_err(engine_error)?;
    let rows = session
        .execute_unpaged(&versions, ())
        .await
        .map_err(engine_error)?
        .into_rows_result()
        .map_err(engine_error)?;
    let mut highest = 0u32;
    for row in rows.rows::<(i32,)>().map_err(engine_error)? {
        let (version,) = row.map_err(engine_error)?;
        let version = u32::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("schema version {version}")))?;
        highest = highest.max(version);
    }
    Ok(highest)
}

/// Applies the pending migrations; returns the version now in force.
pub async fn migrate(session: &Session, config: &ScyllaConfig) -> StoreResult<u32> {
    let current = applied_version(session, &config.keyspace).await?;
    let known = latest_version();
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        for statement in statements(migration.cql, config) {
            // DDL is not prepared: it runs once, and preparing it gains nothing.
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(|e| {
                    StoreError::Engine(format!(
                        "migration {} ({}): {e}\n{statement}",
                        migration.version, migration.name
                    ))
                })?;
        }
        let record = session
            .prepare(format!(
                "INSERT INTO {}.schema_migrations (version, name, applied_at_us) VALUES (?, ?, ?)",
                config.keyspace
            ))
            .await
            .map_err(engine_error)?;
        session
            .execute_unpaged(
                &record,
                (
                    migration.version as i32,
                    migration.name,
                    crate::clock::now_us(),
                ),
            )
            .await
            .map_err(engine_error)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            keyspace = config.keyspace,
            "applied migration"
        );
    }
    applied_version(session, &config.keyspace).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_match_the_embedded_store() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1, "{}", migration.name);
        }
        assert_eq!(
            latest_version(),
            crate::store::embedded::latest_version(),
            "both backends must know the same schema versions"
        );
    }

    #[test]
    fn files_split_into_substituted_statements() {
        let config = ScyllaConfig::from_url("scylla://127.0.0.1:9042/chat_ks").unwrap();
        let first = statements(MIGRATIONS[0].cql, &config);
        assert!(first[0].starts_with("CREATE KEYSPACE IF NOT EXISTS chat_ks"));
        assert!(first[0].contains("'SimpleStrategy'"));
        let statements: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|migration| super::statements(migration.cql, &config))
            .collect();
        for statement in &statements {
            assert!(!statement.contains("${"), "{statement}");
            assert!(!statement.contains("--"), "{statement}");
            assert!(
                statement.contains("IF NOT EXISTS"),
                "not idempotent: {statement}"
            );
        }
        for table in [
            "schema_migrations",
            "meta",
            "apps",
            "app_tokens",
            "chat_intents",
            "chats",
            "chat_index",
            "chat_buckets",
            "user_chats",
            "messages",
            "read_positions",
        ] {
            let create = format!("CREATE TABLE IF NOT EXISTS chat_ks.{table} (");
            assert!(statements.iter().any(|s| s.starts_with(&create)), "{table}");
        }
    }
}
