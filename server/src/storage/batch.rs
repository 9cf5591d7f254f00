//! Several SQL statements sent to SQLite in one call.
//!
//! sqlx runs every SQLite statement on its connection's worker thread, and the hand-off
//! to and from that thread — not the SQL — is what a statement mostly costs (thread
//! wake-ups, in the profiles of BENCHMARKS.md). A batch is one hand-off.
//! Anonymous `?` parameters bind in order across the statements. Values are kept as
//! [`SqlValue`]s rather than sqlx's argument buffer so that batches can be joined: the
//! group committer ([`super::group`]) runs many requests' batches as one.

use std::sync::Arc;

use sqlx::{Arguments, sqlite::SqliteArguments};

use super::WriteTransaction;

/// A value bound to a `?` in a [`WriteBatch`]. Text is shared, not copied, when the
/// batch runs (and runs again, if its group fails): sqlx binds an `Arc<str>` as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(Arc<str>),
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<i32> for SqlValue {
    fn from(value: i32) -> Self {
        Self::Int(value.into())
    }
}

impl From<u32> for SqlValue {
    fn from(value: u32) -> Self {
        Self::Int(value.into())
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        Self::Int(value.into())
    }
}

impl From<f64> for SqlValue {
    fn from(value: f64) -> Self {
        Self::Real(value)
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value.into())
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.into())
    }
}

impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        Self::Text(value.as_str().into())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

#[derive(Default, Debug, Clone)]
pub struct WriteBatch {
    sql: String,
    values: Vec<SqlValue>,
}

impl WriteBatch {
    /// Appends a statement; bind its parameters next, in order.
    pub fn statement(&mut self, sql: &'static str) -> &mut Self {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self
    }

    /// Appends a statement built at run time (an `IN (?, ?, …)` list, say). Only
    /// placeholders may be formatted into it; values are bound.
    pub fn statement_owned(&mut self, sql: String) -> &mut Self {
        self.sql.push_str(&sql);
        self.sql.push_str(";\n");
        self
    }

    pub fn bind(&mut self, value: impl Into<SqlValue>) -> &mut Self {
        self.values.push(value.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.sql.is_empty()
    }

    /// How many statements the batch holds.
    pub fn statements(&self) -> usize {
        self.sql.matches(";\n").count()
    }

    /// Appends every statement of `other` after this batch's own.
    pub fn append(&mut self, other: WriteBatch) {
        self.sql.push_str(&other.sql);
        self.values.extend(other.values);
    }

    /// Runs every statement inside `tx`, in one round trip.
    pub async fn execute(self, tx: &mut WriteTransaction) -> Result<(), sqlx::Error> {
        self.run(&mut **tx).await
    }

    /// Runs every statement on `connection` in one round trip; the statements bring
    /// their own transaction (`BEGIN … COMMIT`).
    pub async fn run_on(self, connection: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        self.run(connection).await
    }

    /// Runs every statement on `executor` in one round trip (the caller owns the
    /// transaction, or the statements bring their own).
    ///
    /// sqlx keeps the prepared statements of each distinct SQL text (the whole batch is
    /// one text), so a batch whose text recurs — a purchase's, a worker's batch of the
    /// same size — is parsed once per connection, not on every run.
    pub(super) async fn run(&self, executor: impl sqlx::SqliteExecutor<'_>) -> Result<(), sqlx::Error> {
        if self.sql.is_empty() {
            return Ok(());
        }
        let mut args = SqliteArguments::default();
        for value in &self.values {
            match value {
                SqlValue::Null => args.add(None::<i64>),
                SqlValue::Int(value) => args.add(*value),
                SqlValue::Real(value) => args.add(*value),
                SqlValue::Text(value) => args.add(value.clone()),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        // Only literal statements and placeholders are appended; every value is bound.
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql.as_str()), args)
            .execute(executor)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Database;

    #[tokio::test]
    async fn statements_run_in_order_with_their_own_parameters() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::open(&crate::storage::resolve_url(dir.path(), None).expect("url"))
            .await
            .expect("db");
        let mut batch = WriteBatch::default();
        batch.statement("CREATE TEMP TABLE t (a TEXT, b BIGINT, c REAL)");
        batch
            .statement("INSERT INTO t (a, b, c) VALUES (?, ?, ?)")
            .bind("one")
            .bind(1i64)
            .bind(0.5);
        let mut second = WriteBatch::default();
        second
            .statement("INSERT INTO t (a, b, c) VALUES (?, ?, ?), (?, ?, ?)")
            .bind("two".to_string())
            .bind(2i64)
            .bind(None::<f64>)
            .bind(Some("three"))
            .bind(3i32)
            .bind(true);
        batch.append(second);
        let mut tx = db.begin_write().await.expect("tx");
        batch.execute(&mut tx).await.expect("runs");
        let rows: Vec<(String, i64, Option<f64>)> = sqlx::query_as("SELECT a, b, c FROM t ORDER BY b")
            .fetch_all(&mut *tx)
            .await
            .expect("rows");
        assert_eq!(
            rows,
            [
                ("one".into(), 1, Some(0.5)),
                ("two".into(), 2, None),
                ("three".into(), 3, Some(1.0))
            ]
        );
    }
}
