//! What parsed statements contain, as the coalescer and the router need to
//! know it: the relations and functions they name, whether they write or
//! lock, and what in them is not taken apart.
//!
//! [`Facts::of`] is the one walk over sqlparser's tree, done by sqlparser's
//! derived [`Visit`], so every node is reached without a match on every
//! kind here. The hooks below look only at the nodes that name things
//! (relations, function calls, `TABLE t`, `FOR UPDATE OF t`, `INTO t`, COPY
//! and DROP targets, CALL) and at constructs outside the PostgreSQL this
//! crate reasons about. Such a construct (another dialect's syntax that
//! sqlparser also accepts as PostgreSQL, `TABLESAMPLE`, a statement kind not
//! listed in `pre_visit_statement`, ...) is kept as SQL text in
//! [`Facts::opaque`]: the router refuses it, the coalescer takes every word
//! of it as a possible name.
//!
//! The walk recurses as deep as the tree. Trees are bounded before parsing
//! (`classify::MAX_NESTING`), which keeps it well within a tokio worker's
//! 2 MiB stack; the tests walk trees at that bound on such a stack.

use std::convert::Infallible;
use std::fmt::Display;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, InTarget, JoinOperator, LimitClause, ObjectName, ObjectNamePart, OrderBy,
    OrderByExpr, OutputClause, Query, Select, SelectInto, SelectItem, SetExpr, Statement,
    TableFactor, TableFunctionArgs, TableObject, TableWithJoins, Visit, Visitor,
    WildcardAdditionalOptions,
};

use crate::classify::ident;

/// What the walk found in a list of statements.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// Relations named anywhere: FROM and JOIN, DML targets, `TABLE t`,
    /// `FOR UPDATE OF t`, `SELECT INTO t`, the targets of COPY, TRUNCATE,
    /// LOCK, DROP, CREATE VIEW/INDEX, ... A table function's name is listed
    /// here too (sqlparser visits `FROM f()` as a relation) and in `calls`.
    pub relations: Vec<Name>,
    /// Functions called: in any expression, in FROM, by CALL.
    pub calls: Vec<Call>,
    /// An INSERT, UPDATE, DELETE or MERGE anywhere (top level, in a CTE,
    /// under EXPLAIN or PREPARE), or a `SELECT INTO`.
    pub writes: bool,
    /// A locking clause (`FOR UPDATE`, `FOR SHARE`, ...) on any query.
    pub locks: bool,
    /// Constructs not taken apart, as SQL text (a construct inside another
    /// is not listed again).
    pub opaque: Vec<String>,
}

/// A relation or function name as written, each part normalized as
/// Postgres resolves it; the last part is the object's own name.
pub(crate) type Name = Vec<String>;

/// One function call.
#[derive(Debug)]
pub(crate) struct Call {
    pub name: Name,
    /// Written in an expression as one unquoted word, which the grammar
    /// may read as a construct of its own (`COALESCE(...)`,
    /// `CURRENT_DATE`); never so in FROM, where every call is a function's.
    pub bare: bool,
    pub args: Args,
}

/// How a call's arguments are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Args {
    /// No parentheses: `CURRENT_DATE`.
    None,
    /// `f(a, b)`.
    List,
    /// `ARRAY(SELECT ...)`.
    Subquery,
}

impl Facts {
    /// The facts of `statements`, from one walk.
    pub(crate) fn of(statements: &[Statement]) -> Facts {
        let mut walk = Walk::default();
        for statement in statements {
            let ControlFlow::Continue(()) = statement.visit(&mut walk);
        }
        walk.facts
    }
}

/// The visitor: the facts so far, and where an opaque expression is.
#[derive(Default)]
struct Walk {
    facts: Facts,
    /// How many expressions enclose the current node.
    depth: usize,
    /// The depth of the expression kept as text, while inside it.
    opaque_from: Option<usize>,
}

impl Walk {
    /// Keeps `node` as text, unless an enclosing expression already is.
    fn opaque(&mut self, node: &dyn Display) {
        if self.opaque_from.is_none() {
            self.facts.opaque.push(node.to_string());
        }
    }

    /// `name` normalized; None (and the name kept as text) when a part is
    /// not an identifier (`IDENTIFIER('t')` of other dialects).
    fn name(&mut self, name: &ObjectName) -> Option<Name> {
        let parts: Option<Name> = name
            .0
            .iter()
            .map(|part| match part {
                ObjectNamePart::Identifier(part) => Some(ident(part)),
                ObjectNamePart::Function(_) => None,
            })
            .collect();
        if parts.is_none() {
            self.opaque(name);
        }
        parts
    }

    fn relation(&mut self, name: &ObjectName) {
        if let Some(name) = self.name(name) {
            self.facts.relations.push(name);
        }
    }

    /// A call of `name`, in an expression (or CALL) or in FROM.
    fn call(&mut self, name: &ObjectName, args: Args, in_expression: bool) {
        let bare = in_expression
            && matches!(
                name.0.as_slice(),
                [ObjectNamePart::Identifier(part)] if part.quote_style.is_none()
            );
        if let Some(name) = self.name(name) {
            self.facts.calls.push(Call { name, bare, args });
        }
    }

    /// A call in an expression or a CALL; its arguments are visited apart.
    fn function(&mut self, function: &Function) {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group: _,
            filter: _,
            null_treatment: _,
            over: _,
        } = function;
        let (kind, plain_clauses) = match args {
            FunctionArguments::None => (Args::None, true),
            FunctionArguments::Subquery(_) => (Args::Subquery, true),
            FunctionArguments::List(list) => {
                self.function_args(&list.args);
                let plain = list.clauses.iter().all(|clause| {
                    matches!(
                        clause,
                        FunctionArgumentClause::OrderBy(_)
                            | FunctionArgumentClause::IgnoreOrRespectNulls(_)
                            | FunctionArgumentClause::JsonNullClause(_)
                            | FunctionArgumentClause::JsonReturningClause(_)
                    )
                });
                (Args::List, plain)
            }
        };
        self.call(name, kind, true);
        // ODBC `{fn f()}`, ClickHouse's parametric `f(p)(a)`, and clauses
        // such as BigQuery's `LIMIT` or MySQL's `SEPARATOR` in a call.
        if *uses_odbc_syntax || !matches!(parameters, FunctionArguments::None) || !plain_clauses {
            self.opaque(function);
        }
    }

    fn function_args(&mut self, args: &[FunctionArg]) {
        for arg in args {
            let (FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg)) = arg;
            if let FunctionArgExpr::WildcardWithOptions(options) = arg {
                self.wildcard(options);
            }
        }
    }

    /// `*` with other dialects' EXCLUDE / EXCEPT / REPLACE / ... options.
    fn wildcard(&mut self, options: &WildcardAdditionalOptions) {
        let WildcardAdditionalOptions {
            wildcard_token: _,
            opt_ilike,
            opt_exclude,
            opt_except,
            opt_replace,
            opt_rename,
            opt_alias,
        } = options;
        if opt_ilike.is_some()
            || opt_exclude.is_some()
            || opt_except.is_some()
            || opt_replace.is_some()
            || opt_rename.is_some()
            || opt_alias.is_some()
        {
            self.opaque(options);
        }
    }

    /// Joins other than PostgreSQL's (semi, anti, apply, ASOF, ...).
    fn joins(&mut self, tables: &TableWithJoins) {
        for join in &tables.joins {
            let plain = matches!(
                join.join_operator,
                JoinOperator::Join(_)
                    | JoinOperator::Inner(_)
                    | JoinOperator::Left(_)
                    | JoinOperator::LeftOuter(_)
                    | JoinOperator::Right(_)
                    | JoinOperator::RightOuter(_)
                    | JoinOperator::FullOuter(_)
                    | JoinOperator::CrossJoin(_)
            );
            if join.global || !plain {
                self.opaque(join);
            }
        }
    }

    /// `SELECT ... INTO t` (or MSSQL's `OUTPUT ... INTO t`): a write to `t`.
    fn into(&mut self, into: &SelectInto) {
        self.facts.writes = true;
        for target in &into.targets {
            match target {
                Expr::Identifier(name) => self.facts.relations.push(vec![ident(name)]),
                Expr::CompoundIdentifier(parts) => {
                    self.facts.relations.push(parts.iter().map(ident).collect());
                }
                other => self.opaque(other),
            }
        }
    }

    fn output(&mut self, output: Option<&OutputClause>) {
        if let Some(OutputClause::Output {
            into_table: Some(into),
            ..
        }) = output
        {
            self.into(into);
        }
    }
}

/// Expression kinds of PostgreSQL that name nothing themselves (their
/// parts are visited apart); a function call is handled apart.
fn plain_expr(expr: &Expr) -> bool {
    match expr {
        Expr::Cast { format, .. } => format.is_none(),
        Expr::In { target, global, .. } => {
            !global && matches!(target, InTarget::List(_) | InTarget::Subquery(_))
        }
        _ => matches!(
            expr,
            Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::Value(_)
                | Expr::TypedString(_)
                | Expr::Wildcard(_)
                | Expr::QualifiedWildcard(..)
                | Expr::IsFalse(_)
                | Expr::IsNotFalse(_)
                | Expr::IsTrue(_)
                | Expr::IsNotTrue(_)
                | Expr::IsNull(_)
                | Expr::IsNotNull(_)
                | Expr::IsUnknown(_)
                | Expr::IsNotUnknown(_)
                | Expr::Nested(_)
                | Expr::UnaryOp { .. }
                | Expr::Collate { .. }
                | Expr::Extract { .. }
                | Expr::Ceil { .. }
                | Expr::Floor { .. }
                | Expr::IsJson { .. }
                | Expr::IsNormalized { .. }
                | Expr::Interval(_)
                | Expr::IsDistinctFrom(..)
                | Expr::IsNotDistinctFrom(..)
                | Expr::BinaryOp { .. }
                | Expr::AnyOp { .. }
                | Expr::AllOp { .. }
                | Expr::AtTimeZone { .. }
                | Expr::Position { .. }
                | Expr::Like { .. }
                | Expr::ILike { .. }
                | Expr::SimilarTo { .. }
                | Expr::Between { .. }
                | Expr::Substring { .. }
                | Expr::Trim { .. }
                | Expr::Overlay { .. }
                | Expr::Case { .. }
                | Expr::Exists { .. }
                | Expr::Subquery(_)
                | Expr::GroupingSets(_)
                | Expr::Cube(_)
                | Expr::Rollup(_)
                | Expr::Tuple(_)
                | Expr::Array(_)
                | Expr::CompoundFieldAccess { .. }
        ),
    }
}

impl Visitor for Walk {
    type Break = Infallible;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Infallible> {
        match statement {
            Statement::Insert(insert) => {
                self.facts.writes = true;
                if let TableObject::TableFunction(function) = &insert.table {
                    self.function(function);
                }
                self.output(insert.output.as_ref());
            }
            Statement::Update(update) => {
                self.facts.writes = true;
                self.output(update.output.as_ref());
            }
            Statement::Delete(delete) => {
                self.facts.writes = true;
                // MySQL's `DELETE t1, t2 FROM ...`.
                delete.tables.iter().for_each(|name| self.relation(name));
                self.output(delete.output.as_ref());
            }
            Statement::Merge(merge) => {
                self.facts.writes = true;
                self.output(merge.output.as_ref());
            }
            Statement::Copy {
                source: CopySource::Table { table_name, .. },
                ..
            } => self.relation(table_name),
            Statement::Drop { names, table, .. } => {
                names
                    .iter()
                    .chain(table)
                    .for_each(|name| self.relation(name));
            }
            Statement::Call(function) => self.function(function),
            Statement::Declare { stmts, .. } => {
                for declare in stmts.iter().filter(|declare| declare.for_query.is_none()) {
                    self.opaque(declare);
                }
            }
            // Their names are visited as relations, expressions, queries or
            // statements; SHOW and transaction control name none.
            Statement::Query(_)
            | Statement::Copy { .. }
            | Statement::Truncate(_)
            | Statement::Lock(_)
            | Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::Explain { .. }
            | Statement::ExplainTable { .. }
            | Statement::Prepare { .. }
            | Statement::ShowVariable { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. } => {}
            other => self.opaque(other),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Infallible> {
        let Query {
            with,
            body,
            order_by: _,
            limit_clause,
            fetch: _,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        for lock in locks {
            self.facts.locks = true;
            if let Some(of) = &lock.of {
                self.relation(of);
            }
        }
        let cte_from = with
            .iter()
            .flat_map(|with| &with.cte_tables)
            .any(|cte| cte.from.is_some());
        let limit_by = matches!(
            limit_clause,
            Some(LimitClause::LimitOffset { limit_by, .. }) if !limit_by.is_empty()
        );
        if cte_from
            || limit_by
            || for_clause.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || !pipe_operators.is_empty()
        {
            self.opaque(query);
        }
        // `TABLE t` among the body's set operations (without recursion: a
        // chain of them is as deep as it is long).
        let mut todo = vec![&**body];
        while let Some(set_expr) = todo.pop() {
            match set_expr {
                SetExpr::SetOperation { left, right, .. } => todo.extend([&**left, &**right]),
                SetExpr::Table(table) => match &table.table_name {
                    Some(name) => {
                        let schema = table.schema_name.iter().map(ident);
                        self.facts
                            .relations
                            .push(schema.chain([ident(name)]).collect());
                    }
                    None => self.opaque(table),
                },
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Infallible> {
        let Select {
            select_token: _,
            // Comments such as pg_hint_plan's `/*+ ... */`.
            optimizer_hints: _,
            distinct: _,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection: _,
            connect_by,
            group_by: _,
            cluster_by,
            distribute_by,
            sort_by,
            having: _,
            named_window: _,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor: _,
        } = select;
        if let Some(into) = into {
            self.into(into);
        }
        // Other dialects' clauses.
        if select_modifiers.is_some()
            || top.is_some()
            || exclude.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !connect_by.is_empty()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
        {
            self.opaque(select);
        }
        for item in projection {
            if let SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) = item
            {
                self.wildcard(options);
            }
        }
        from.iter().for_each(|tables| self.joins(tables));
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Infallible> {
        self.relation(relation);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Infallible> {
        let plain = match factor {
            TableFactor::Table {
                name,
                alias: _,
                args,
                with_hints,
                version,
                with_ordinality: _,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance: _,
            } => {
                let mut settings = None;
                if let Some(TableFunctionArgs { args, settings: s }) = args {
                    self.call(name, Args::List, false);
                    self.function_args(args);
                    settings = s.as_ref();
                }
                // TABLESAMPLE's method is a function this walk does not judge.
                settings.is_none()
                    && with_hints.is_empty()
                    && version.is_none()
                    && partitions.is_empty()
                    && json_path.is_none()
                    && sample.is_none()
                    && index_directives.is_empty()
            }
            TableFactor::Derived { sample, .. } => sample.is_none(),
            TableFactor::Function { name, args, .. } => {
                self.call(name, Args::List, false);
                self.function_args(args);
                true
            }
            TableFactor::UNNEST {
                with_offset,
                with_offset_alias,
                ..
            } => {
                self.facts.calls.push(Call {
                    name: vec!["unnest".to_owned()],
                    bare: false,
                    args: Args::List,
                });
                !with_offset && with_offset_alias.is_none()
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.joins(table_with_joins);
                true
            }
            _ => false,
        };
        if !plain {
            self.opaque(factor);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Infallible> {
        self.depth += 1;
        if let Expr::Function(function) = expr {
            self.function(function);
        } else if !plain_expr(expr) && self.opaque_from.is_none() {
            self.opaque(expr);
            self.opaque_from = Some(self.depth);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Infallible> {
        if self.opaque_from == Some(self.depth) {
            self.opaque_from = None;
        }
        self.depth = self.depth.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_order_by(&mut self, order_by: &OrderBy) -> ControlFlow<Infallible> {
        // ClickHouse's INTERPOLATE.
        if order_by.interpolate.is_some() {
            self.opaque(order_by);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_order_by_expr(&mut self, order_by: &OrderByExpr) -> ControlFlow<Infallible> {
        // ClickHouse's WITH FILL.
        if order_by.with_fill.is_some() {
            self.opaque(order_by);
        }
        ControlFlow::Continue(())
    }
}
