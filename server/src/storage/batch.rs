//! Several SQL statements sent to SQLite in one call.
//!
//! sqlx runs every SQLite statement on its connection's worker thread, and the hand-off
//! to and from that thread — not the SQL — is what a statement mostly costs (a profile at
//! 600 purchases/s put a third of the time in thread wake-ups). A batch is one hand-off.
//! Anonymous `?` parameters bind in order across the statements.

use sqlx::{Arguments, Encode, Sqlite, Transaction, Type, sqlite::SqliteArguments};

#[derive(Default)]
pub struct WriteBatch {
    sql: String,
    args: SqliteArguments,
    error: Option<sqlx::error::BoxDynError>,
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

    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: for<'q> Encode<'q, Sqlite> + Type<Sqlite> + 'static,
    {
        if let Err(error) = self.args.add(value) {
            self.error.get_or_insert(error);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.sql.is_empty()
    }

    /// Runs every statement inside `tx`, in one round trip.
    pub async fn execute(self, tx: &mut Transaction<'_, Sqlite>) -> Result<(), sqlx::Error> {
        if let Some(error) = self.error {
            return Err(sqlx::Error::Encode(error));
        }
        if self.sql.is_empty() {
            return Ok(());
        }
        // Only literal statements are appended; every value is bound.
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args)
            .execute(&mut **tx)
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
        batch.statement("CREATE TEMP TABLE t (a TEXT, b BIGINT)");
        batch
            .statement("INSERT INTO t (a, b) VALUES (?, ?)")
            .bind("one".to_string())
            .bind(1i64);
        batch
            .statement("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)")
            .bind("two".to_string())
            .bind(2i64)
            .bind("three".to_string())
            .bind(3i64);
        let mut tx = db.begin_write().await.expect("tx");
        batch.execute(&mut tx).await.expect("runs");
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT a, b FROM t ORDER BY b")
            .fetch_all(&mut *tx)
            .await
            .expect("rows");
        assert_eq!(rows, [("one".into(), 1), ("two".into(), 2), ("three".into(), 3)]);
    }
}
