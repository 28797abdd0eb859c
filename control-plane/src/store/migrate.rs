//! Sealing a store written before encryption at rest (docs/encryption.md, "Upgrading").
//!
//! A manager whose data directory has a store but no key file gets a new data key, and every
//! plaintext value of both databases is rewritten sealed before the store opens; then redb
//! compacts the files, so that the freed pages that held the plaintext are given back. Values
//! already sealed are left alone, so an interrupted migration simply continues at the next
//! start.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::codec;
use super::log_store::{LOG, LOG_FILE, LOG_META};
use super::objects::ObjectKind;
use super::state_machine::STATE_FILE;
use super::tables::{DbError, SM_META, object_table};

/// Seals every plaintext value of the store in `dir` with the installed data key. Returns how
/// many values it sealed. Blocking; call before the store opens.
pub fn seal_plaintext(dir: &Path) -> Result<usize, DbError> {
    let mut sealed = 0;
    let state = dir.join(STATE_FILE);
    if state.exists() {
        let mut db = Database::create(&state)?;
        let mut tables = vec![SM_META];
        tables.extend(ObjectKind::ALL.into_iter().map(object_table));
        sealed += seal_tables(&db, &tables)?;
        compact(&mut db)?;
    }
    let log = dir.join(LOG_FILE);
    if log.exists() {
        let mut db = Database::create(&log)?;
        sealed += seal_tables(&db, &[LOG_META])?;
        sealed += seal_table_u64(&db, LOG)?;
        compact(&mut db)?;
    }
    if sealed > 0 {
        tracing::info!(values = sealed, dir = %dir.display(), "sealed the store's plaintext values with the new data key");
    }
    Ok(sealed)
}

fn compact(db: &mut Database) -> Result<(), DbError> {
    db.compact()
        .map_err(|e| DbError::Redb { source: e.into() })?;
    Ok(())
}

fn seal_tables(
    db: &Database,
    tables: &[TableDefinition<'static, &'static str, &'static [u8]>],
) -> Result<usize, DbError> {
    let mut count = 0;
    let txn = db.begin_write()?;
    for definition in tables {
        let mut table = txn.open_table(*definition)?;
        let mut plain = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            if !codec::is_sealed(value.value()) {
                plain.push((key.value().to_owned(), value.value().to_vec()));
            }
        }
        for (key, value) in plain {
            let value = codec::seal(&key, value)?;
            table.insert(key.as_str(), value.as_slice())?;
            count += 1;
        }
    }
    txn.commit()?;
    Ok(count)
}

fn seal_table_u64(
    db: &Database,
    definition: TableDefinition<'static, u64, &'static [u8]>,
) -> Result<usize, DbError> {
    let txn = db.begin_write()?;
    let mut count = 0;
    {
        let mut table = txn.open_table(definition)?;
        let mut plain = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            if !codec::is_sealed(value.value()) {
                plain.push((key.value(), value.value().to_vec()));
            }
        }
        for (key, value) in plain {
            let value = codec::seal(format_args!("log entry {key}"), value)?;
            table.insert(key, value.as_slice())?;
            count += 1;
        }
    }
    txn.commit()?;
    Ok(count)
}
