//! berth's metadata store: `<root>/meta.redb`.
//!
//! One redb database holds every record berthd must not lose: pods,
//! containers, images, name reservations, runtime settings. Each domain crate
//! declares its own [`Table`]s (a name and a serde record type) and writes
//! them through [`Store::write`], which is exactly one redb transaction,
//! committed with immediate durability (fsync) before it returns. A call that
//! has been acknowledged is therefore on disk, also across `kill -9`.
//!
//! Records are stored as JSON: a few hundred bytes per pod or container,
//! readable with any redb tool when debugging, and tolerant of added fields
//! (`#[serde(default)]`) so most schema changes need no migration. Changes
//! that do need one bump [`SCHEMA_VERSION`] and add a step to
//! [`migrate`](Store::open).
//!
//! Tables read on hot paths can be kept decoded in memory
//! ([`Store::cache`], module `cache`): [`Store::get_shared`] and
//! [`Store::list_shared`] then read no file and decode nothing.

mod cache;

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache::{Cache, Change};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Store-wide bookkeeping: `schema_version`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema_version";

/// Errors of the metadata store. Each names what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened (permissions, disk,
    /// another process holding it).
    #[error("cannot open metadata store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// The file was written by a newer berth; refusing protects its data.
    #[error(
        "metadata store {path} has schema version {found}, newer than the {supported} this berthd supports; upgrade berthd"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// A record could not be decoded: the file was edited or corrupted.
    #[error("record {key:?} in table {table} is not valid: {source}")]
    Decode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded (a bug: records are plain data).
    #[error("record {key:?} for table {table} cannot be encoded: {source}")]
    Encode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A cached table was read with another record type than it was
    /// cached with (a bug: two `Table`s with one name).
    #[error("table {table} is cached with another record type")]
    CacheType { table: &'static str },
    /// redb failed reading or committing (I/O error, disk full).
    #[error("metadata store: {0}")]
    Db(#[from] redb::Error),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::SetDurabilityError> for StoreError {
    fn from(e: redb::SetDurabilityError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A typed table: string keys (ids, names) to JSON records of type `V`.
pub struct Table<V> {
    name: &'static str,
    _record: PhantomData<fn() -> V>,
}

impl<V> Table<V> {
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            _record: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn def(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }
}

impl<V> fmt::Debug for Table<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Table({})", self.name)
    }
}

/// The open metadata store. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    cache: Arc<Cache>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if missing) the store at `path` and checks its schema
    /// version. A file left by a crash is repaired by redb while opening.
    pub fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let store = Store {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
            cache: Arc::new(Cache::default()),
        };
        store.migrate()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        match tx.open_table(META) {
            Ok(t) => Ok(t.get(SCHEMA_KEY)?.map(|v| v.value()).unwrap_or(0)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    fn migrate(&self) -> Result<()> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: self.path.as_ref().clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        // found == 0: a new file. Later versions add their steps here, each
        // in the same transaction as the version bump.
        let tx = self.db.begin_write()?;
        tx.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(())
    }

    /// Reads one record.
    pub fn get<V: DeserializeOwned>(&self, table: &Table<V>, key: &str) -> Result<Option<V>> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(raw) = t.get(key)? else {
            return Ok(None);
        };
        decode(table, key, raw.value()).map(Some)
    }

    /// Resolves a unique key prefix, as ids are given by people and CLIs:
    /// the key itself when it exists, else the one key starting with
    /// `prefix`. Reads keys only, stopping at the second match.
    pub fn resolve_prefix<V>(&self, table: &Table<V>, prefix: &str) -> Result<Prefix> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Prefix::None),
            Err(e) => return Err(e.into()),
        };
        let mut found = Vec::new();
        for entry in t.range(prefix..)? {
            let (k, _) = entry?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if key == prefix {
                return Ok(Prefix::One(key.to_owned()));
            }
            found.push(key.to_owned());
            if found.len() > 1 {
                break;
            }
        }
        Ok(match found.len() {
            0 => Prefix::None,
            1 => Prefix::One(found.remove(0)),
            _ => Prefix::Ambiguous,
        })
    }

    /// Reads every record of a table, in key order.
    pub fn list<V: DeserializeOwned>(&self, table: &Table<V>) -> Result<Vec<(String, V)>> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let key = k.value().to_owned();
            let record = decode(table, &key, v.value())?;
            out.push((key, record));
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction and commits it durably. If `f`
    /// returns an error nothing it wrote is kept.
    pub fn write<R, E>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        self.write_with(redb::Durability::Immediate, f)
    }

    /// As [`write`](Self::write), but committed without waiting for the
    /// disk: readers see it at once, and it reaches the disk with the next
    /// durable commit (of any caller), or is lost if the machine crashes
    /// before one. redb keeps such a commit's header in memory only, so a
    /// crash of this process loses it too. Only for writes a durable one
    /// of the same flow follows within milliseconds, whose loss recovery
    /// repairs: an image lease and a container's name reservation (its
    /// record follows), RemoveContainer's transaction (the background
    /// deletion ends durable) and the release after an exit.
    pub fn write_unsynced<R, E>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        self.write_with(redb::Durability::None, f)
    }

    fn write_with<R, E>(
        &self,
        durability: redb::Durability,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let mut tx = self.db.begin_write().map_err(StoreError::from)?;
        tx.set_durability(durability).map_err(StoreError::from)?;
        let mut txn = Txn {
            tx: &tx,
            cache: &self.cache,
            changes: Vec::new(),
        };
        let out = f(&mut txn)?;
        let changes = txn.changes;
        if changes.is_empty() {
            tx.commit().map_err(StoreError::from)?;
        } else {
            let mut tables = self.cache.lock_for_commit();
            tx.commit().map_err(StoreError::from)?;
            Cache::apply(&mut tables, changes);
        }
        Ok(out)
    }

    /// Writes one record in its own transaction.
    pub fn put<V>(&self, table: &Table<V>, key: &str, value: &V) -> Result<()>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.write(|tx| tx.put(table, key, value))
    }

    /// Keeps `table` decoded in memory from now on (see the module
    /// comment); loads it now. Idempotent.
    pub fn cache<V>(&self, table: &Table<V>) -> Result<()>
    where
        V: DeserializeOwned + Send + Sync + 'static,
    {
        // Under the commit lock: no write of the table slips between the
        // read and the load.
        let mut tables = self.cache.lock_for_commit();
        if tables.contains_key(table.name) {
            return Ok(());
        }
        let records = self
            .list(table)?
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v) as cache::Shared))
            .collect();
        tables.insert(table.name, records);
        Ok(())
    }

    /// One record, shared: from the cache when the table is cached (no
    /// decoding), else read and decoded.
    pub fn get_shared<V>(&self, table: &Table<V>, key: &str) -> Result<Option<Arc<V>>>
    where
        V: DeserializeOwned + Send + Sync + 'static,
    {
        match self.cache.get(table.name, key) {
            Some(hit) => hit.map(|r| downcast(table, r)).transpose(),
            None => Ok(self.get(table, key)?.map(Arc::new)),
        }
    }

    /// Every record of a table in key order, shared: from the cache when
    /// the table is cached, else read and decoded.
    pub fn list_shared<V>(&self, table: &Table<V>) -> Result<Vec<Arc<V>>>
    where
        V: DeserializeOwned + Send + Sync + 'static,
    {
        match self.cache.list(table.name) {
            Some(all) => all.into_iter().map(|r| downcast(table, r)).collect(),
            None => Ok(self
                .list(table)?
                .into_iter()
                .map(|(_, v)| Arc::new(v))
                .collect()),
        }
    }
}

fn downcast<V: Send + Sync + 'static>(table: &Table<V>, r: cache::Shared) -> Result<Arc<V>> {
    r.downcast::<V>()
        .map_err(|_| StoreError::CacheType { table: table.name })
}

/// What a key prefix names; see [`Store::resolve_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefix {
    None,
    One(String),
    /// More than one key starts with it.
    Ambiguous,
}

/// A write transaction in progress; see [`Store::write`].
pub struct Txn<'a> {
    tx: &'a redb::WriteTransaction,
    cache: &'a Cache,
    /// Changes of cached tables, applied to the cache on commit.
    changes: Vec<Change>,
}

impl fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Txn")
    }
}

impl Txn<'_> {
    pub fn put<V>(&mut self, table: &Table<V>, key: &str, value: &V) -> Result<()>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            table: table.name,
            key: key.to_owned(),
            source,
        })?;
        self.tx
            .open_table(table.def())?
            .insert(key, bytes.as_slice())?;
        if self.cache.is_cached(table.name) {
            // The cached copy is what a read from disk would give, decoded
            // once here rather than on every read.
            let copy: V = decode(table, key, &bytes)?;
            self.changes
                .push(Change::Put(table.name, key.to_owned(), Arc::new(copy)));
        }
        Ok(())
    }

    /// Removes a record; returns whether it existed.
    pub fn delete<V>(&mut self, table: &Table<V>, key: &str) -> Result<bool> {
        let existed = self.tx.open_table(table.def())?.remove(key)?.is_some();
        if existed && self.cache.is_cached(table.name) {
            self.changes
                .push(Change::Delete(table.name, key.to_owned()));
        }
        Ok(existed)
    }

    pub fn get<V: DeserializeOwned>(&mut self, table: &Table<V>, key: &str) -> Result<Option<V>> {
        let t = self.tx.open_table(table.def())?;
        let Some(raw) = t.get(key)? else {
            return Ok(None);
        };
        decode(table, key, raw.value()).map(Some)
    }
}

fn decode<V: DeserializeOwned>(table: &Table<V>, key: &str, raw: &[u8]) -> Result<V> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Decode {
        table: table.name,
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        name: String,
        n: u32,
    }

    const RECS: Table<Rec> = Table::new("recs");

    fn rec(name: &str, n: u32) -> Rec {
        Rec {
            name: name.into(),
            n,
        }
    }

    #[test]
    fn new_store_records_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let store = Store::open(&path).unwrap();
            store.put(&RECS, "a", &rec("a", 1)).unwrap();
            store.put(&RECS, "b", &rec("b", 2)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get(&RECS, "a").unwrap(), Some(rec("a", 1)));
        let all = store.list(&RECS).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], ("b".to_string(), rec("b", 2)));
    }

    #[test]
    fn prefixes_resolve_to_one_key_or_say_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(store.resolve_prefix(&RECS, "ab").unwrap(), Prefix::None);
        for k in ["abc1", "abc2", "abd", "abdx"] {
            store.put(&RECS, k, &rec(k, 0)).unwrap();
        }
        assert_eq!(
            store.resolve_prefix(&RECS, "abc1").unwrap(),
            Prefix::One("abc1".into())
        );
        assert_eq!(
            store.resolve_prefix(&RECS, "abc").unwrap(),
            Prefix::Ambiguous
        );
        // An exact key wins over longer keys sharing it as a prefix.
        assert_eq!(
            store.resolve_prefix(&RECS, "abd").unwrap(),
            Prefix::One("abd".into())
        );
        assert_eq!(
            store.resolve_prefix(&RECS, "abdx").unwrap(),
            Prefix::One("abdx".into())
        );
        assert_eq!(store.resolve_prefix(&RECS, "b").unwrap(), Prefix::None);
        assert_eq!(store.resolve_prefix(&RECS, "a").unwrap(), Prefix::Ambiguous);
    }

    #[test]
    fn missing_table_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        assert_eq!(store.get(&RECS, "x").unwrap(), None);
        assert!(store.list(&RECS).unwrap().is_empty());
    }

    #[test]
    fn failed_transaction_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        let r: Result<(), StoreError> = store.write(|tx| {
            tx.put(&RECS, "a", &rec("a", 1))?;
            Err(StoreError::SchemaTooNew {
                path: PathBuf::new(),
                found: 0,
                supported: 0,
            })
        });
        assert!(r.is_err());
        assert_eq!(store.get(&RECS, "a").unwrap(), None);
    }

    fn shared(v: Vec<Arc<Rec>>) -> Vec<Rec> {
        v.into_iter().map(|r| (*r).clone()).collect()
    }

    /// The table as read from the file, bypassing the cache.
    fn on_disk(store: &Store) -> Vec<Rec> {
        store
            .list(&RECS)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    #[test]
    fn a_cached_table_reads_what_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        store.put(&RECS, "b", &rec("b", 2)).unwrap();
        store.cache(&RECS).unwrap();
        store.cache(&RECS).unwrap();
        store.put(&RECS, "a", &rec("a", 1)).unwrap();
        store.put(&RECS, "b", &rec("b", 3)).unwrap();
        assert_eq!(
            shared(store.list_shared(&RECS).unwrap()),
            vec![rec("a", 1), rec("b", 3)]
        );
        // A failed transaction changes neither the file nor the cache.
        let r: Result<(), StoreError> = store.write(|tx| {
            tx.put(&RECS, "c", &rec("c", 9))?;
            tx.delete(&RECS, "a")?;
            Err(StoreError::CacheType { table: "x" })
        });
        assert!(r.is_err());
        assert_eq!(store.list_shared(&RECS).unwrap().len(), 2);
        store
            .write(|tx| {
                tx.delete(&RECS, "a")?;
                tx.put(&RECS, "c", &rec("c", 4))
            })
            .unwrap();
        let from_disk = on_disk(&store);
        assert_eq!(shared(store.list_shared(&RECS).unwrap()), from_disk);
        assert_eq!(store.get_shared(&RECS, "a").unwrap(), None);
        assert_eq!(*store.get_shared(&RECS, "c").unwrap().unwrap(), rec("c", 4));
        // The same record is handed out without copying or decoding.
        let one = store.get_shared(&RECS, "c").unwrap().unwrap();
        let two = store.get_shared(&RECS, "c").unwrap().unwrap();
        assert!(Arc::ptr_eq(&one, &two));
    }

    #[test]
    fn uncached_tables_read_the_same_through_the_shared_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        store.put(&RECS, "a", &rec("a", 1)).unwrap();
        assert_eq!(shared(store.list_shared(&RECS).unwrap()), vec![rec("a", 1)]);
        assert_eq!(*store.get_shared(&RECS, "a").unwrap().unwrap(), rec("a", 1));
    }

    #[test]
    fn a_cached_table_read_as_another_type_is_an_error() {
        const OTHER: Table<u32> = Table::new("recs");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        store.put(&RECS, "a", &rec("a", 1)).unwrap();
        store.cache(&RECS).unwrap();
        assert!(matches!(
            store.list_shared(&OTHER),
            Err(StoreError::CacheType { table: "recs" })
        ));
    }

    #[test]
    fn concurrent_writers_leave_the_cache_equal_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        store.cache(&RECS).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25u32 {
                        store.put(&RECS, "same", &rec("same", t * 100 + i)).unwrap();
                        store
                            .put(&RECS, &format!("k{t}-{i}"), &rec("x", i))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let from_disk = on_disk(&store);
        assert_eq!(from_disk.len(), 101);
        assert_eq!(shared(store.list_shared(&RECS).unwrap()), from_disk);
    }

    #[test]
    fn an_unsynced_write_is_visible_and_kept_by_the_next_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let store = Store::open(&path).unwrap();
            store.cache(&RECS).unwrap();
            store
                .write_unsynced(|tx| tx.put(&RECS, "lease", &rec("lease", 1)))
                .unwrap();
            assert_eq!(store.get(&RECS, "lease").unwrap(), Some(rec("lease", 1)));
            assert_eq!(store.list_shared(&RECS).unwrap().len(), 1);
            store.put(&RECS, "record", &rec("record", 2)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.list(&RECS).unwrap().len(), 2);
    }

    #[test]
    fn delete_reports_existence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        store.put(&RECS, "a", &rec("a", 1)).unwrap();
        assert!(store.write(|tx| tx.delete(&RECS, "a")).unwrap());
        assert!(!store.write(|tx| tx.delete(&RECS, "a")).unwrap());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("upgrade berthd"));
    }

    #[test]
    fn corrupt_record_is_a_decode_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.redb")).unwrap();
        {
            let tx = store.db.begin_write().unwrap();
            tx.open_table(RECS.def())
                .unwrap()
                .insert("bad", b"{not json".as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let err = store.get(&RECS, "bad").unwrap_err();
        assert!(err.to_string().contains("\"bad\" in table recs"), "{err}");
    }
}
