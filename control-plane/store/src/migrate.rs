//! Re-sealing a store's values with the current data key (docs/encryption.md, "Upgrading"
//! and "Data key rotation").
//!
//! - A manager whose data directory has a store but no key file gets a new data key, and every
//!   plaintext value of both databases is rewritten sealed before the store opens.
//! - When a manager's data key is rotated (autolock turned on), every value sealed with the
//!   previous key is rewritten with the new one, while the store runs
//!   ([`reseal_databases`]) or, if the manager stopped half-way, at its next start
//!   ([`reseal_dir`]).
//!
//! Values already sealed with the current key are left alone, so an interrupted pass simply
//! continues. Before the store opens, redb then compacts the files, so that the freed pages
//! that held the old bytes are given back.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::codec;
use super::log_store::{LOG, LOG_FILE, LOG_META};
use super::objects::ObjectKind;
use super::state_machine::STATE_FILE;
use super::tables::{DbError, SM_META, SNAPSHOT, object_table};

/// Re-seals every value of the store in `dir` that is not sealed with the current data key.
/// Returns how many values it rewrote. Blocking; call before the store opens.
pub fn reseal_dir(dir: &Path) -> Result<usize, DbError> {
    let mut resealed = 0;
    let state = dir.join(STATE_FILE);
    if state.exists() {
        let mut db = Database::create(&state)?;
        resealed += reseal_state(&db)?;
        compact(&mut db)?;
    }
    let log = dir.join(LOG_FILE);
    if log.exists() {
        let mut db = Database::create(&log)?;
        resealed += reseal_log(&db)?;
        compact(&mut db)?;
    }
    if resealed > 0 {
        tracing::info!(values = resealed, dir = %dir.display(), "re-sealed the store's values with the current data key");
    }
    Ok(resealed)
}

/// [`reseal_dir`] on the open databases of a running store. Each database is one write
/// transaction, so writers wait for it and nothing is missed. Blocking.
pub fn reseal_databases(state: &Database, log: &Database) -> Result<usize, DbError> {
    Ok(reseal_state(state)? + reseal_log(log)?)
}

fn reseal_state(db: &Database) -> Result<usize, DbError> {
    let mut tables = vec![SM_META, SNAPSHOT];
    tables.extend(ObjectKind::ALL.into_iter().map(object_table));
    reseal_tables(db, &tables)
}

fn reseal_log(db: &Database) -> Result<usize, DbError> {
    Ok(reseal_tables(db, &[LOG_META])? + reseal_table_u64(db, LOG)?)
}

fn compact(db: &mut Database) -> Result<(), DbError> {
    db.compact()
        .map_err(|e| DbError::Redb { source: e.into() })?;
    Ok(())
}

/// `value` sealed with the current key; `None` if it already is.
fn resealed(what: impl std::fmt::Display, value: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
    if codec::is_current(value) {
        return Ok(None);
    }
    let plain = codec::open(&what, value)?.into_owned();
    Ok(Some(codec::seal(what, plain)?))
}

fn reseal_tables(
    db: &Database,
    tables: &[TableDefinition<'static, &'static str, &'static [u8]>],
) -> Result<usize, DbError> {
    let mut count = 0;
    let txn = db.begin_write()?;
    for definition in tables {
        let mut table = txn.open_table(*definition)?;
        let mut stale = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let key = key.value().to_owned();
            if let Some(value) = resealed(&key, value.value())? {
                stale.push((key, value));
            }
        }
        for (key, value) in stale {
            table.insert(key.as_str(), value.as_slice())?;
            count += 1;
        }
    }
    txn.commit()?;
    Ok(count)
}

fn reseal_table_u64(
    db: &Database,
    definition: TableDefinition<'static, u64, &'static [u8]>,
) -> Result<usize, DbError> {
    let txn = db.begin_write()?;
    let mut count = 0;
    {
        let mut table = txn.open_table(definition)?;
        let mut stale = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let key = key.value();
            if let Some(value) = resealed(format_args!("log entry {key}"), value.value())? {
                stale.push((key, value));
            }
        }
        for (key, value) in stale {
            table.insert(key, value.as_slice())?;
            count += 1;
        }
    }
    txn.commit()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase as _;

    use super::*;

    /// One data key for every test of this binary: the key is process-wide, and tests run in
    /// parallel, so no test may install another one or remove it.
    pub(crate) fn install_test_key() {
        static KEY: std::sync::OnceLock<hive_encryption::Key> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| hive_encryption::Key::from_bytes([7; 32]));
        codec::set_data_key(Some(key.clone()));
    }

    const SECRET: &str = "cry-unit-secret-0451";

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn sealed_values_hide_their_plaintext_and_read_back() {
        install_test_key();
        let bytes = codec::encode("test value", &SECRET).unwrap();
        assert!(codec::is_sealed(&bytes));
        assert!(!contains(&bytes, SECRET));
        let back: String = codec::decode("test value", &bytes).unwrap();
        assert_eq!(back, SECRET);
        // A value written before encryption still reads.
        let plain = serde_json::to_vec(&SECRET).unwrap();
        assert_eq!(
            codec::decode::<String>("old value", &plain).unwrap(),
            SECRET
        );
        // A damaged sealed value is an error, never garbage.
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(matches!(
            codec::decode::<String>("damaged", &damaged),
            Err(codec::CodecError::Open { .. })
        ));
    }

    #[test]
    fn a_plaintext_store_is_sealed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let plain = serde_json::to_vec(&SECRET).unwrap();
        {
            let db = Database::create(dir.path().join(STATE_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(SM_META)
                .unwrap()
                .insert("note", plain.as_slice())
                .unwrap();
            txn.open_table(object_table(ObjectKind::Service))
                .unwrap()
                .insert("svc1", plain.as_slice())
                .unwrap();
            txn.commit().unwrap();
            let db = Database::create(dir.path().join(LOG_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(LOG)
                .unwrap()
                .insert(1, plain.as_slice())
                .unwrap();
            txn.open_table(LOG_META)
                .unwrap()
                .insert("vote", plain.as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        install_test_key();
        assert_eq!(reseal_dir(dir.path()).unwrap(), 4);
        assert_eq!(reseal_dir(dir.path()).unwrap(), 0, "already sealed");
        for file in [STATE_FILE, LOG_FILE] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap();
            assert!(
                !contains(&bytes, SECRET),
                "{file} still holds the plaintext"
            );
        }
        let db = Database::create(dir.path().join(STATE_FILE)).unwrap();
        let read = db.begin_read().unwrap();
        let table = read.open_table(object_table(ObjectKind::Service)).unwrap();
        let value = table.get("svc1").unwrap().unwrap();
        assert!(codec::is_sealed(value.value()));
        assert_eq!(
            codec::decode::<String>("svc1", value.value()).unwrap(),
            SECRET
        );
    }
}
