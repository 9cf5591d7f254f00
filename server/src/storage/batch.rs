//! Several SQL statements committed together, on either engine.
//!
//! On SQLite a batch goes in one call: sqlx runs every SQLite statement on its
//! connection's worker thread, and the hand-off to and from that thread — not the SQL —
//! is what a statement mostly costs (thread wake-ups, in the profiles of BENCHMARKS.md).
//! PostgreSQL's extended protocol takes one statement per query, so there the batch
//! runs statement by statement inside its transaction.
//!
//! Statements are written with anonymous `?` parameters, bound in order across the
//! statements (SQLite's own form); for PostgreSQL each statement's `?`s become
//! `$1, $2, …` when it runs. Values are kept as [`SqlValue`]s rather than sqlx's
//! argument buffer so that batches can be joined: the group committer
//! ([`super::group`]) runs many requests' batches as one.

use std::{borrow::Cow, ops::Range, sync::Arc};

use sqlx::{
    Arguments, Encode, PgConnection, Type,
    postgres::PgArguments,
    sqlite::{SqliteArguments, SqliteConnection},
};

use super::{Connection, WriteTransaction};

/// A value bound to a `?` in a [`WriteBatch`]. Text is shared, not copied, when the
/// batch runs (and runs again, if its group fails): sqlx binds an `Arc<str>` as it is.
/// A null keeps its type: PostgreSQL checks a parameter's type against its column.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    NullInt,
    NullReal,
    NullText,
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

impl From<Option<i64>> for SqlValue {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Self::NullInt, Self::Int)
    }
}

impl From<Option<f64>> for SqlValue {
    fn from(value: Option<f64>) -> Self {
        value.map_or(Self::NullReal, Self::Real)
    }
}

impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        value.map_or(Self::NullText, Into::into)
    }
}

impl From<Option<&str>> for SqlValue {
    fn from(value: Option<&str>) -> Self {
        value.map_or(Self::NullText, Into::into)
    }
}

impl SqlValue {
    /// Binds the value as the next parameter of `args`, on either engine.
    fn add_to<A>(&self, args: &mut A) -> Result<(), sqlx::Error>
    where
        A: Arguments,
        i64: for<'t> Encode<'t, A::Database> + Type<A::Database>,
        f64: for<'t> Encode<'t, A::Database> + Type<A::Database>,
        Option<i64>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
        Option<f64>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
        Option<String>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
        Arc<str>: for<'t> Encode<'t, A::Database> + Type<A::Database>,
    {
        match self {
            Self::NullInt => args.add(None::<i64>),
            Self::NullReal => args.add(None::<f64>),
            Self::NullText => args.add(None::<String>),
            Self::Int(value) => args.add(*value),
            Self::Real(value) => args.add(*value),
            Self::Text(value) => args.add(value.clone()),
        }
        .map_err(sqlx::Error::Encode)
    }
}

/// Which engines run a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    Everywhere,
    /// A row lock that SQLite's one writer makes unnecessary.
    PostgresOnly,
}

#[derive(Debug, Clone)]
struct Statement {
    sql: Cow<'static, str>,
    /// Its values in [`WriteBatch::values`].
    values: Range<usize>,
    runs: Runs,
}

#[derive(Default, Debug, Clone)]
pub struct WriteBatch {
    statements: Vec<Statement>,
    values: Vec<SqlValue>,
}

impl WriteBatch {
    /// Appends a statement; bind its parameters next, in order.
    pub fn statement(&mut self, sql: &'static str) -> &mut Self {
        self.push(Cow::Borrowed(sql), Runs::Everywhere)
    }

    /// Appends a statement built at run time (an `IN (?, ?, …)` list, say). Only
    /// placeholders may be formatted into it; values are bound.
    pub fn statement_owned(&mut self, sql: String) -> &mut Self {
        self.push(Cow::Owned(sql), Runs::Everywhere)
    }

    /// Appends a statement that only PostgreSQL runs: a lock that serializes what
    /// SQLite's single writer already serializes.
    pub fn postgres_only(&mut self, sql: &'static str) -> &mut Self {
        self.push(Cow::Borrowed(sql), Runs::PostgresOnly)
    }

    fn push(&mut self, sql: Cow<'static, str>, runs: Runs) -> &mut Self {
        let at = self.values.len();
        self.statements.push(Statement {
            sql,
            values: at..at,
            runs,
        });
        self
    }

    /// Binds the next `?` of the last statement.
    pub fn bind(&mut self, value: impl Into<SqlValue>) -> &mut Self {
        self.values.push(value.into());
        if let Some(last) = self.statements.last_mut() {
            last.values.end = self.values.len();
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// How many statements the batch runs on every engine (PostgreSQL's row locks not
    /// counted): what the journey's database stage reports.
    pub fn statements(&self) -> usize {
        self.statements
            .iter()
            .filter(|statement| statement.runs == Runs::Everywhere)
            .count()
    }

    /// Appends every statement of `other` after this batch's own.
    pub fn append(&mut self, other: WriteBatch) {
        let offset = self.values.len();
        self.statements
            .extend(other.statements.into_iter().map(|mut statement| {
                statement.values = statement.values.start + offset..statement.values.end + offset;
                statement
            }));
        self.values.extend(other.values);
    }

    /// Runs every statement inside `tx`.
    pub async fn execute(self, tx: &mut WriteTransaction) -> Result<(), sqlx::Error> {
        self.run(super::Connect::connection(tx)).await
    }

    /// Runs every statement on `connection` (the caller owns the transaction, or the
    /// statements bring their own).
    pub(super) async fn run(&self, connection: Connection<'_>) -> Result<(), sqlx::Error> {
        match connection {
            Connection::Sqlite(connection) => self.run_on(connection).await,
            Connection::Postgres(connection) => self.run_postgres(connection).await,
        }
    }

    /// Runs every statement on a SQLite connection in one round trip.
    ///
    /// sqlx keeps the prepared statements of each distinct SQL text (the whole batch is
    /// one text), so a batch whose text recurs — a purchase's, a worker's batch of the
    /// same size — is parsed once per connection, not on every run.
    pub async fn run_on(&self, connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let mut sql = String::new();
        let mut args = SqliteArguments::default();
        for statement in self
            .statements
            .iter()
            .filter(|statement| statement.runs == Runs::Everywhere)
        {
            sql.push_str(&statement.sql);
            sql.push_str(";\n");
            for value in &self.values[statement.values.clone()] {
                value.add_to(&mut args)?;
            }
        }
        if sql.is_empty() {
            return Ok(());
        }
        // Only literal statements and placeholders are appended; every value is bound.
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(connection)
            .await
            .map(drop)
    }

    /// Runs the statements one by one on a PostgreSQL connection, each with its `?`s
    /// numbered.
    async fn run_postgres(&self, connection: &mut PgConnection) -> Result<(), sqlx::Error> {
        for statement in &self.statements {
            let mut args = PgArguments::default();
            for value in &self.values[statement.values.clone()] {
                value.add_to(&mut args)?;
            }
            // Only literal statements and placeholders are appended; every value is bound.
            sqlx::query_with(sqlx::AssertSqlSafe(numbered(&statement.sql)), args)
                .execute(&mut *connection)
                .await?;
        }
        Ok(())
    }
}

/// `?, ?` → `$1, $2`: PostgreSQL's placeholders. Our statements have no `?` inside
/// string literals, so every `?` is a placeholder.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Database;

    #[test]
    fn placeholders_are_numbered_for_postgresql() {
        assert_eq!(
            numbered("UPDATE t SET a = ?, b = ? WHERE id IN (?, ?)"),
            "UPDATE t SET a = $1, b = $2 WHERE id IN ($3, $4)"
        );
        assert_eq!(numbered("DELETE FROM t"), "DELETE FROM t");
    }

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
        let rows: Vec<(String, i64, Option<f64>)> = crate::with_connection!(&mut tx, |c| {
            sqlx::query_as("SELECT a, b, c FROM t ORDER BY b").fetch_all(c).await
        })
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
