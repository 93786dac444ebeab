//! Migrations of the embedded store. They are code, not files: an LSM has no
//! DDL, and each step is a transformation of keys and values. Versions share
//! one sequence with the CQL files of `migrations/` so that one number names
//! one schema, whatever the backend; `migrations/README.md` lists them.
//!
//! Each applied version is recorded in the `schema_migrations` keyspace, in
//! the same atomic commit as the migration's own writes.

use fjall::{PersistMode, Readable, SingleWriterWriteTx};

use super::{Keyspaces, keys};
use crate::store::StoreResult;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub apply: fn(&mut SingleWriterWriteTx<'_>, &Keyspaces) -> StoreResult<()>,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial layout: apps, tokens, chats, subscriptions both ways, messages",
        apply: initial_layout,
    },
    Migration {
        version: 2,
        name: "read positions",
        apply: read_positions,
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn initial_layout(tx: &mut SingleWriterWriteTx<'_>, keyspaces: &Keyspaces) -> StoreResult<()> {
    // The keyspaces themselves exist once opened; the layout's one datum is
    // the app id sequence, which starts at zero so the first app is 1.
    if tx.get(&keyspaces.meta, keys::APP_SEQUENCE)?.is_none() {
        tx.insert(&keyspaces.meta, keys::APP_SEQUENCE, 0u64.to_be_bytes());
    }
    Ok(())
}

fn read_positions(_: &mut SingleWriterWriteTx<'_>, _: &Keyspaces) -> StoreResult<()> {
    // Their keyspace exists once the store is open, and a member without a
    // stored position is at 0: nothing to write. The version is recorded so
    // that a build without read positions refuses this store.
    Ok(())
}

pub const DURABLE: Option<PersistMode> = Some(PersistMode::SyncAll);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1, "{}", migration.name);
        }
    }
}
