//! Multi-row statements: one round trip for many rows.
//!
//! Every statement to SQLite is a hand-off to sqlx's worker thread and back (two thread
//! wake-ups), and every statement to PostgreSQL a network round trip; the committer and
//! ingest write many small rows per transaction, so they write them a table at a time.
//!
//! Placeholders are `$1, $2, …` on PostgreSQL and plain `?` on SQLite: SQLite looks a
//! numbered parameter's name up by walking a list (sqlx asks for every one), which costs
//! quadratic time in a statement with thousands of them; anonymous ones are not in the list.

use crate::db::Backend;
use sqlx::{Any, Transaction};
use std::fmt::Write;

/// The backend `tx` runs on.
pub(crate) fn backend_of(tx: &Transaction<'_, Any>) -> Backend {
    match (**tx).backend_name() {
        "PostgreSQL" => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn placeholder(sql: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => sql.push('?'),
        Backend::Postgres => {
            let _ = write!(sql, "${n}");
        }
    }
}

/// Parameters per statement: far below both backends' limits (SQLite 32,766, PostgreSQL
/// 65,535), large enough that a batch of decisions needs one statement per table.
const MAX_PARAMS: usize = 4_000;

/// How many rows of `width` parameters one statement carries.
pub(crate) fn rows_per_statement(width: usize) -> usize {
    (MAX_PARAMS / width.max(1)).max(1)
}

/// `{head} VALUES ($1, …, $width), (…), … {tail}` for `rows` rows of `width` parameters;
/// `head` and `tail` take no parameters.
pub(crate) fn values_sql(
    backend: Backend,
    head: &str,
    width: usize,
    rows: usize,
    tail: &str,
) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + 16 + rows * width * 6);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            placeholder(&mut sql, backend, r * width + c + 1);
        }
        sql.push(')');
    }
    if !tail.is_empty() {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

/// A statement under construction, as `sqlx::query` makes it.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Inserts `rows` in as few statements as fit: `{head} VALUES (…), … {tail}`, `bind`
/// binding each row's `width` values in the order `head` names their columns.
pub(crate) async fn insert<'r, T>(
    tx: &mut Transaction<'_, Any>,
    head: &str,
    width: usize,
    tail: &str,
    rows: &'r [T],
    bind: impl Fn(Query<'r>, &'r T) -> Query<'r>,
) -> Result<(), sqlx::Error> {
    let backend = backend_of(tx);
    for chunk in rows.chunks(rows_per_statement(width)) {
        let sql = values_sql(backend, head, width, chunk.len(), tail);
        let query = chunk
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), &bind);
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `$1, $2, …` (`count` parameters) for an `IN (…)` list, in a statement with no other.
pub(crate) fn params_list(backend: Backend, count: usize) -> String {
    let mut out = String::with_capacity(count * 5);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        placeholder(&mut out, backend, i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_numbered_row_by_row() {
        assert_eq!(
            values_sql(
                Backend::Postgres,
                "INSERT INTO t (a, b)",
                2,
                3,
                "RETURNING a"
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) RETURNING a"
        );
        assert_eq!(
            values_sql(Backend::Sqlite, "INSERT INTO t (a, b)", 2, 2, ""),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
        assert_eq!(params_list(Backend::Postgres, 3), "$1, $2, $3");
        assert_eq!(params_list(Backend::Sqlite, 2), "?, ?");
    }

    #[test]
    fn a_statement_stays_under_the_parameter_limit() {
        for width in [1, 7, 11, 13] {
            assert!(rows_per_statement(width) * width <= MAX_PARAMS);
            assert!(rows_per_statement(width) >= 1);
        }
        assert_eq!(rows_per_statement(MAX_PARAMS * 2), 1);
    }
}
