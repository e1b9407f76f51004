//! The walk over sqlparser's tree that decides whether parsed statements
//! are all replica-safe reads (the rules are in the parent module's
//! documentation).
//!
//! It is a whitelist: every construct it does not know, including the other
//! dialects' syntax sqlparser shares with PostgreSQL, makes the answer
//! Primary. It keeps its own work list instead of recursing, so a left-deep
//! operator chain as deep as the parser allows cannot overflow the stack.

mod expr;

use sqlparser::ast::{
    DescribeAlias, Distinct, Expr, GroupByExpr, JoinConstraint, JoinOperator, LimitClause,
    NamedWindowDefinition, NamedWindowExpr, OrderBy, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableFunctionArgs,
    TableWithJoins, WildcardAdditionalOptions,
};

use super::names::{normalize, relation_ok, show_ok, split_name};
use super::Volatility;

/// Whether every one of `statements` is a read a replica may answer.
pub(super) fn all_reads(statements: &[Statement], volatility: &dyn Volatility) -> bool {
    let mut walk = Walk {
        todo: statements.iter().map(Node::Statement).collect(),
        volatility,
    };
    walk.run().is_some()
}

/// A part of the tree still to be checked.
enum Node<'a> {
    Statement(&'a Statement),
    Query(&'a Query),
    SetExpr(&'a SetExpr),
    Tables(&'a TableWithJoins),
    Factor(&'a TableFactor),
    Expr(&'a Expr),
}

/// The work list, and what it needs to judge function calls.
struct Walk<'a> {
    todo: Vec<Node<'a>>,
    volatility: &'a dyn Volatility,
}

/// `Some(())` when `ok`: lets the checks below stop at the first refusal with `?`.
fn require(ok: bool) -> Option<()> {
    ok.then_some(())
}

impl<'a> Walk<'a> {
    /// Checks nodes until none is left (Some) or one is refused (None).
    fn run(&mut self) -> Option<()> {
        while let Some(node) = self.todo.pop() {
            match node {
                Node::Statement(statement) => self.statement(statement)?,
                Node::Query(query) => self.query(query)?,
                Node::SetExpr(set_expr) => self.set_expr(set_expr)?,
                Node::Tables(tables) => self.tables(tables)?,
                Node::Factor(factor) => self.factor(factor)?,
                Node::Expr(expr) => self.expr(expr)?,
            }
        }
        Some(())
    }

    fn push(&mut self, expr: &'a Expr) {
        self.todo.push(Node::Expr(expr));
    }

    fn push_opt(&mut self, expr: Option<&'a Expr>) {
        if let Some(expr) = expr {
            self.push(expr);
        }
    }

    fn push_all(&mut self, exprs: &'a [Expr]) {
        exprs.iter().for_each(|expr| self.push(expr));
    }

    fn statement(&mut self, statement: &'a Statement) -> Option<()> {
        match statement {
            Statement::Query(query) => self.todo.push(Node::Query(query)),
            Statement::ShowVariable { variable } => {
                require(show_ok(variable.first()?))?;
            }
            // EXPLAIN follows what it explains (see the module documentation).
            Statement::Explain {
                describe_alias: DescribeAlias::Explain,
                statement,
                ..
            } => self.todo.push(Node::Statement(statement)),
            _ => return None,
        }
        Some(())
    }

    fn query(&mut self, query: &'a Query) -> Option<()> {
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
        // `locks` is FOR UPDATE / FOR SHARE; the rest is other dialects'.
        require(
            locks.is_empty()
                && for_clause.is_none()
                && settings.is_none()
                && format_clause.is_none()
                && pipe_operators.is_empty(),
        )?;
        if let Some(with) = with {
            for cte in &with.cte_tables {
                require(cte.from.is_none())?;
                self.todo.push(Node::Query(&cte.query));
            }
        }
        self.todo.push(Node::SetExpr(body));
        if let Some(OrderBy { kind, interpolate }) = order_by {
            require(interpolate.is_none())?;
            if let OrderByKind::Expressions(exprs) = kind {
                self.order_by(exprs)?;
            }
        }
        match limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                require(limit_by.is_empty())?;
                self.push_opt(limit.as_ref());
                self.push_opt(offset.as_ref().map(|offset| &offset.value));
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
                self.push(offset);
                self.push(limit);
            }
            None => {}
        }
        if let Some(fetch) = fetch {
            self.push_opt(fetch.quantity.as_ref());
        }
        Some(())
    }

    fn set_expr(&mut self, set_expr: &'a SetExpr) -> Option<()> {
        match set_expr {
            SetExpr::Select(select) => self.select(select)?,
            SetExpr::Query(query) => self.todo.push(Node::Query(query)),
            SetExpr::SetOperation { left, right, .. } => {
                self.todo.push(Node::SetExpr(left));
                self.todo.push(Node::SetExpr(right));
            }
            SetExpr::Values(values) => {
                values
                    .rows
                    .iter()
                    .for_each(|row| self.push_all(&row.content));
            }
            SetExpr::Table(table) => {
                let name = normalize(table.table_name.as_ref()?);
                let schema = table.schema_name.as_ref().map(normalize);
                require(relation_ok(schema.as_deref(), &name))?;
            }
            // Data-modifying statements, e.g. in a CTE.
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                return None
            }
        }
        Some(())
    }

    fn select(&mut self, select: &'a Select) -> Option<()> {
        let Select {
            select_token: _,
            // Comments such as pg_hint_plan's `/*+ ... */`.
            optimizer_hints: _,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
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
            value_table_mode,
            flavor: _,
        } = select;
        // `into` is SELECT INTO, which creates a table; the rest is other
        // dialects'.
        require(
            into.is_none()
                && select_modifiers.is_none()
                && top.is_none()
                && exclude.is_none()
                && lateral_views.is_empty()
                && prewhere.is_none()
                && connect_by.is_empty()
                && cluster_by.is_empty()
                && distribute_by.is_empty()
                && sort_by.is_empty()
                && qualify.is_none()
                && value_table_mode.is_none(),
        )?;
        if let Some(Distinct::On(exprs)) = distinct {
            self.push_all(exprs);
        }
        for item in projection {
            self.select_item(item)?;
        }
        from.iter()
            .for_each(|tables| self.todo.push(Node::Tables(tables)));
        self.push_opt(selection.as_ref());
        if let GroupByExpr::Expressions(exprs, _) = group_by {
            self.push_all(exprs);
        }
        self.push_opt(having.as_ref());
        for NamedWindowDefinition(_, window) in named_window {
            if let NamedWindowExpr::WindowSpec(spec) = window {
                self.window(spec)?;
            }
        }
        Some(())
    }

    fn select_item(&mut self, item: &'a SelectItem) -> Option<()> {
        match item {
            SelectItem::UnnamedExpr(expr)
            | SelectItem::ExprWithAlias { expr, .. }
            | SelectItem::ExprWithAliases { expr, .. } => self.push(expr),
            SelectItem::QualifiedWildcard(kind, options) => {
                require(plain_wildcard(options))?;
                if let SelectItemQualifiedWildcardKind::Expr(expr) = kind {
                    self.push(expr);
                }
            }
            SelectItem::Wildcard(options) => require(plain_wildcard(options))?,
        }
        Some(())
    }

    fn tables(&mut self, tables: &'a TableWithJoins) -> Option<()> {
        self.todo.push(Node::Factor(&tables.relation));
        for join in &tables.joins {
            require(!join.global)?;
            let constraint = match &join.join_operator {
                JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                | JoinOperator::Left(constraint)
                | JoinOperator::LeftOuter(constraint)
                | JoinOperator::Right(constraint)
                | JoinOperator::RightOuter(constraint)
                | JoinOperator::FullOuter(constraint)
                | JoinOperator::CrossJoin(constraint) => constraint,
                _ => return None,
            };
            self.todo.push(Node::Factor(&join.relation));
            if let JoinConstraint::On(expr) = constraint {
                self.push(expr);
            }
        }
        Some(())
    }

    fn factor(&mut self, factor: &'a TableFactor) -> Option<()> {
        match factor {
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
                // TABLESAMPLE is refused too: its sampling method is a
                // function this walk does not judge.
                require(
                    with_hints.is_empty()
                        && version.is_none()
                        && partitions.is_empty()
                        && json_path.is_none()
                        && sample.is_none()
                        && index_directives.is_empty(),
                )?;
                match args {
                    None => {
                        let (schema, name) = split_name(name)?;
                        require(relation_ok(schema.as_deref(), &name))?;
                    }
                    // `FROM f(...)`: a set-returning function.
                    Some(TableFunctionArgs { args, settings }) => {
                        require(settings.is_none())?;
                        self.call(name)?;
                        self.function_args(args)?;
                    }
                }
            }
            TableFactor::Derived {
                subquery, sample, ..
            } => {
                require(sample.is_none())?;
                self.todo.push(Node::Query(subquery));
            }
            TableFactor::Function { name, args, .. } => {
                self.call(name)?;
                self.function_args(args)?;
            }
            TableFactor::UNNEST {
                array_exprs,
                with_offset,
                with_offset_alias,
                ..
            } => {
                require(
                    !with_offset
                        && with_offset_alias.is_none()
                        && self.volatility.is_safe(None, "unnest"),
                )?;
                self.push_all(array_exprs);
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.todo.push(Node::Tables(table_with_joins)),
            _ => return None,
        }
        Some(())
    }
}

/// `*` without other dialects' EXCLUDE / EXCEPT / REPLACE / ... options.
fn plain_wildcard(options: &WildcardAdditionalOptions) -> bool {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    opt_ilike.is_none()
        && opt_exclude.is_none()
        && opt_except.is_none()
        && opt_replace.is_none()
        && opt_rename.is_none()
        && opt_alias.is_none()
}
