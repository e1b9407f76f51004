//! Which tables, views and functions parsed statements mention.
//!
//! Owns the walk over sqlparser's AST behind [`super::Classified::Mentions`].
//! Queries and DML (SELECT, INSERT, UPDATE, DELETE, MERGE, COPY, TRUNCATE,
//! LOCK, DROP, CREATE VIEW/INDEX, EXPLAIN, PREPARE, DECLARE, CALL) are walked
//! precisely: relation names in FROM/JOIN/targets and function names in any
//! expression, down through subqueries and CTEs. Everything else (other
//! statements, rare clauses and expression kinds) is rendered back to SQL and
//! every word of it is taken as a possible name, so nothing is missed at the
//! price of listing column names and keywords too.

use std::collections::BTreeSet;
use std::fmt::Display;

use sqlparser::ast::{
    ConflictTarget, CopySource, FromTable, GroupByExpr, Insert, JoinConstraint, JoinOperator,
    LimitClause, MergeAction, MergeInsertKind, MergeUpdateKind, NamedWindowExpr, ObjectName,
    ObjectNamePart, OnConflictAction, OnInsert, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableObject, TableSampleKind,
    TableWithJoins, UpdateTableFromKind,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

mod expr;

use super::{ident, normalize};

/// The sorted, deduplicated names `statements` mention; None if a fallback
/// rendering could not be tokenized (then nothing can be promised).
pub(super) fn of(statements: &[Statement]) -> Option<Vec<String>> {
    let mut walk = Walk::default();
    for statement in statements {
        walk.statement(statement);
    }
    (!walk.opaque).then(|| walk.names.into_iter().collect())
}

/// The walk's findings so far.
#[derive(Default)]
struct Walk {
    names: BTreeSet<String>,
    opaque: bool,
}

impl Walk {
    fn statement(&mut self, statement: &Statement) {
        match statement {
            Statement::Query(query) => self.query(query),
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => {
                self.table_with_joins(&update.table);
                self.assignments(&update.assignments);
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    self.tables(from);
                }
                self.opt_expr(update.selection.as_ref());
                self.returning(update.returning.as_deref());
                self.order_by_exprs(&update.order_by);
                self.opt_expr(update.limit.as_ref());
                self.words_of(update.output.as_ref());
            }
            Statement::Delete(delete) => {
                delete.tables.iter().for_each(|name| self.object(name));
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                self.tables(from);
                if let Some(using) = &delete.using {
                    self.tables(using);
                }
                self.opt_expr(delete.selection.as_ref());
                self.returning(delete.returning.as_deref());
                self.order_by_exprs(&delete.order_by);
                self.opt_expr(delete.limit.as_ref());
                self.words_of(delete.output.as_ref());
            }
            Statement::Merge(merge) => {
                self.table_factor(&merge.table);
                self.table_factor(&merge.source);
                self.expr(&merge.on);
                for clause in &merge.clauses {
                    self.opt_expr(clause.predicate.as_ref());
                    match &clause.action {
                        MergeAction::Insert(insert) => {
                            if let MergeInsertKind::Values(values) = &insert.kind {
                                self.values(values);
                            }
                            self.opt_expr(insert.insert_predicate.as_ref());
                        }
                        MergeAction::Update(update) => {
                            if let MergeUpdateKind::Set(assignments) = &update.kind {
                                self.assignments(assignments);
                            }
                            self.opt_expr(update.update_predicate.as_ref());
                            self.opt_expr(update.delete_predicate.as_ref());
                        }
                        MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
                    }
                }
                self.words_of(merge.output.as_ref());
            }
            Statement::Copy { source, .. } => match source {
                CopySource::Table { table_name, .. } => self.object(table_name),
                CopySource::Query(query) => self.query(query),
            },
            Statement::Truncate(truncate) => {
                for target in &truncate.table_names {
                    self.object(&target.name);
                }
            }
            Statement::Lock(lock) => {
                for target in &lock.tables {
                    self.object(&target.name);
                }
            }
            Statement::Drop { names, table, .. } => {
                names.iter().chain(table).for_each(|name| self.object(name));
            }
            Statement::CreateView(view) => {
                self.object(&view.name);
                self.query(&view.query);
            }
            Statement::CreateIndex(index) => {
                self.object(&index.table_name);
                self.words(index);
            }
            Statement::Explain { statement, .. } | Statement::Prepare { statement, .. } => {
                self.statement(statement)
            }
            Statement::ExplainTable { table_name, .. } => self.object(table_name),
            Statement::Declare { stmts, .. } => {
                for declare in stmts {
                    match &declare.for_query {
                        Some(query) => self.query(query),
                        None => self.words(declare),
                    }
                }
            }
            Statement::Call(function) => self.function(function),
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. } => {}
            other => self.words(other),
        }
    }

    fn insert(&mut self, insert: &Insert) {
        match &insert.table {
            TableObject::TableName(name) => self.object(name),
            TableObject::TableFunction(function) => self.function(function),
            TableObject::TableQuery(query) => self.query(query),
        }
        if let Some(source) = &insert.source {
            self.query(source);
        }
        self.assignments(&insert.assignments);
        match &insert.on {
            Some(OnInsert::OnConflict(on_conflict)) => {
                if let Some(ConflictTarget::Columns {
                    predicate: Some(predicate),
                    ..
                }) = &on_conflict.conflict_target
                {
                    self.expr(predicate);
                }
                if let OnConflictAction::DoUpdate(update) = &on_conflict.action {
                    self.assignments(&update.assignments);
                    self.opt_expr(update.selection.as_ref());
                }
            }
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => self.assignments(assignments),
            Some(other) => self.words(other),
            None => {}
        }
        self.returning(insert.returning.as_deref());
        if let Some(partitioned) = &insert.partitioned {
            self.exprs(partitioned);
        }
        if !insert.multi_table_into_clauses.is_empty()
            || !insert.multi_table_when_clauses.is_empty()
            || insert.multi_table_else_clause.is_some()
            || insert.output.is_some()
        {
            self.words(insert);
        }
    }

    fn query(&mut self, query: &Query) {
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if let Some(with) = with {
            for cte in &with.cte_tables {
                self.query(&cte.query);
            }
        }
        self.set_expr(body);
        if let Some(order_by) = order_by {
            if let OrderByKind::Expressions(exprs) = &order_by.kind {
                self.order_by_exprs(exprs);
            }
            let interpolated = order_by
                .interpolate
                .iter()
                .flat_map(|i| i.exprs.iter().flatten());
            for interpolate in interpolated {
                self.opt_expr(interpolate.expr.as_ref());
            }
        }
        match limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                self.opt_expr(limit.as_ref());
                self.opt_expr(offset.as_ref().map(|offset| &offset.value));
                self.exprs(limit_by);
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.expr(offset);
                self.expr(limit);
            }
            None => {}
        }
        if let Some(fetch) = fetch {
            self.opt_expr(fetch.quantity.as_ref());
        }
        for lock in locks {
            if let Some(of) = &lock.of {
                self.object(of);
            }
        }
        if for_clause.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || !pipe_operators.is_empty()
        {
            self.words(query);
        }
    }

    fn set_expr(&mut self, set_expr: &SetExpr) {
        match set_expr {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            SetExpr::Values(values) => self.values(values),
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement)
            | SetExpr::Merge(statement) => self.statement(statement),
            SetExpr::Table(table) => {
                if let Some(name) = &table.table_name {
                    self.names.insert(ident(name));
                }
            }
        }
    }

    fn select(&mut self, select: &Select) {
        let Select {
            select_token: _,
            optimizer_hints: _,
            distinct,
            select_modifiers: _,
            top,
            top_before_distinct: _,
            projection,
            exclude: _,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode: _,
            flavor: _,
        } = select;
        if let Some(sqlparser::ast::Distinct::On(exprs)) = distinct {
            self.exprs(exprs);
        }
        self.words_of(top.as_ref());
        projection.iter().for_each(|item| self.select_item(item));
        // SELECT INTO creates a table.
        self.words_of(into.as_ref());
        self.tables(from);
        for view in lateral_views {
            self.expr(&view.lateral_view);
        }
        self.opt_expr(prewhere.as_ref());
        self.opt_expr(selection.as_ref());
        connect_by.iter().for_each(|connect| self.words(connect));
        if let GroupByExpr::Expressions(exprs, _) = group_by {
            self.exprs(exprs);
        }
        self.exprs(cluster_by);
        self.exprs(distribute_by);
        self.order_by_exprs(sort_by);
        self.opt_expr(having.as_ref());
        for window in named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &window.1 {
                self.window_spec(spec);
            }
        }
        self.opt_expr(qualify.as_ref());
    }

    fn select_item(&mut self, item: &SelectItem) {
        match item {
            SelectItem::UnnamedExpr(expr)
            | SelectItem::ExprWithAlias { expr, .. }
            | SelectItem::ExprWithAliases { expr, .. } => self.expr(expr),
            SelectItem::QualifiedWildcard(kind, options) => {
                if let SelectItemQualifiedWildcardKind::Expr(expr) = kind {
                    self.expr(expr);
                }
                self.words(options);
            }
            SelectItem::Wildcard(options) => self.words(options),
        }
    }

    fn returning(&mut self, returning: Option<&[SelectItem]>) {
        returning
            .unwrap_or_default()
            .iter()
            .for_each(|item| self.select_item(item));
    }

    fn tables(&mut self, tables: &[TableWithJoins]) {
        tables.iter().for_each(|table| self.table_with_joins(table));
    }

    fn table_with_joins(&mut self, table: &TableWithJoins) {
        self.table_factor(&table.relation);
        for join in &table.joins {
            self.table_factor(&join.relation);
            let constraint = match &join.join_operator {
                JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                | JoinOperator::Left(constraint)
                | JoinOperator::LeftOuter(constraint)
                | JoinOperator::Right(constraint)
                | JoinOperator::RightOuter(constraint)
                | JoinOperator::FullOuter(constraint)
                | JoinOperator::CrossJoin(constraint)
                | JoinOperator::Semi(constraint)
                | JoinOperator::LeftSemi(constraint)
                | JoinOperator::RightSemi(constraint)
                | JoinOperator::Anti(constraint)
                | JoinOperator::LeftAnti(constraint)
                | JoinOperator::RightAnti(constraint)
                | JoinOperator::StraightJoin(constraint) => constraint,
                JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } => {
                    self.expr(match_condition);
                    constraint
                }
                JoinOperator::CrossApply
                | JoinOperator::OuterApply
                | JoinOperator::ArrayJoin
                | JoinOperator::LeftArrayJoin
                | JoinOperator::InnerArrayJoin => continue,
            };
            if let JoinConstraint::On(expr) = constraint {
                self.expr(expr);
            }
        }
    }

    fn table_factor(&mut self, factor: &TableFactor) {
        match factor {
            TableFactor::Table {
                name,
                args,
                with_hints,
                sample,
                ..
            } => {
                self.object(name);
                if let Some(args) = args {
                    self.function_args(&args.args);
                }
                self.exprs(with_hints);
                if let Some(
                    TableSampleKind::BeforeTableAlias(sample)
                    | TableSampleKind::AfterTableAlias(sample),
                ) = sample
                {
                    self.words(sample);
                }
            }
            TableFactor::Derived { subquery, .. } => self.query(subquery),
            TableFactor::TableFunction { expr, .. } => self.expr(expr),
            TableFactor::Function { name, args, .. } => {
                self.object(name);
                self.function_args(args);
            }
            TableFactor::UNNEST { array_exprs, .. } => self.exprs(array_exprs),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            other => self.words(other),
        }
    }

    /// A relation or function name: its last part, normalized.
    fn object(&mut self, name: &ObjectName) {
        match name.0.last() {
            Some(ObjectNamePart::Identifier(last)) => {
                self.names.insert(ident(last));
            }
            Some(part @ ObjectNamePart::Function(_)) => self.words(part),
            None => {}
        }
    }

    fn words_of(&mut self, node: Option<&impl Display>) {
        if let Some(node) = node {
            self.words(node);
        }
    }

    /// The conservative fallback: every word of `node` rendered as SQL.
    fn words(&mut self, node: &dyn Display) {
        let text = node.to_string();
        match Tokenizer::new(&PostgreSqlDialect {}, &text).tokenize() {
            Ok(tokens) => {
                for token in tokens {
                    if let Token::Word(word) = token {
                        self.names.insert(normalize(&word.value, word.quote_style));
                    }
                }
            }
            Err(_) => self.opaque = true,
        }
    }
}
