//! The expression half of the mentions walk: function names in any
//! expression, and the subqueries expressions contain (handed back to the
//! statement half in the parent module).

use sqlparser::ast::{
    AccessExpr, Assignment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, InTarget, OrderByExpr, Subscript, Values, WindowFrameBound, WindowSpec,
    WindowType,
};

use super::Walk;

impl Walk {
    pub(super) fn values(&mut self, values: &Values) {
        values.rows.iter().for_each(|row| self.exprs(&row.content));
    }

    pub(super) fn assignments(&mut self, assignments: &[Assignment]) {
        assignments
            .iter()
            .for_each(|assignment| self.expr(&assignment.value));
    }

    pub(super) fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) {
        exprs.iter().for_each(|order_by| self.expr(&order_by.expr));
    }

    pub(super) fn exprs(&mut self, exprs: &[Expr]) {
        exprs.iter().for_each(|expr| self.expr(expr));
    }

    pub(super) fn opt_expr(&mut self, expr: Option<&Expr>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    pub(super) fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Value(_)
            | Expr::TypedString(_)
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..) => {}
            Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner)
            | Expr::Nested(inner)
            | Expr::UnaryOp { expr: inner, .. }
            | Expr::Cast { expr: inner, .. }
            | Expr::Collate { expr: inner, .. }
            | Expr::Extract { expr: inner, .. }
            | Expr::Ceil { expr: inner, .. }
            | Expr::Floor { expr: inner, .. }
            | Expr::IsJson { expr: inner, .. }
            | Expr::IsNormalized { expr: inner, .. }
            | Expr::Named { expr: inner, .. }
            | Expr::JsonAccess { value: inner, .. }
            | Expr::Prefixed { value: inner, .. } => self.expr(inner),
            Expr::Interval(interval) => self.expr(&interval.value),
            Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::BinaryOp { left, right, .. }
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. }
            | Expr::AtTimeZone {
                timestamp: left,
                time_zone: right,
            }
            | Expr::Position {
                expr: left,
                r#in: right,
            }
            | Expr::RLike {
                expr: left,
                pattern: right,
                ..
            } => {
                self.expr(left);
                self.expr(right);
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::SimilarTo {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(expr);
                self.expr(pattern);
                self.opt_expr(escape_char.as_deref());
            }
            Expr::In { expr, target, .. } => {
                self.expr(expr);
                match target {
                    InTarget::List(list) => self.exprs(list),
                    InTarget::Subquery(query) => self.query(query),
                    InTarget::Unnest(array) => self.expr(array),
                    InTarget::Table { name, args } => {
                        self.object(name);
                        self.function_args(args.as_deref().unwrap_or_default());
                    }
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr);
                self.expr(low);
                self.expr(high);
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr);
                self.opt_expr(substring_from.as_deref());
                self.opt_expr(substring_for.as_deref());
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.expr(expr);
                self.opt_expr(trim_what.as_deref());
                self.exprs(trim_characters.as_deref().unwrap_or_default());
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.expr(expr);
                self.expr(overlay_what);
                self.expr(overlay_from);
                self.opt_expr(overlay_for.as_deref());
            }
            Expr::Function(function) => self.function(function),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.opt_expr(operand.as_deref());
                for when in conditions {
                    self.expr(&when.condition);
                    self.expr(&when.result);
                }
                self.opt_expr(else_result.as_deref());
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query(subquery),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                sets.iter().for_each(|set| self.exprs(set));
            }
            Expr::Tuple(exprs) => self.exprs(exprs),
            Expr::Array(array) => self.exprs(&array.elem),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.expr(root);
                for access in access_chain {
                    match access {
                        AccessExpr::Dot(expr) => self.expr(expr),
                        AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index),
                        AccessExpr::Subscript(Subscript::Slice {
                            lower_bound,
                            upper_bound,
                            stride,
                        }) => {
                            self.opt_expr(lower_bound.as_ref());
                            self.opt_expr(upper_bound.as_ref());
                            self.opt_expr(stride.as_ref());
                        }
                    }
                }
            }
            other => self.words(other),
        }
    }

    pub(super) fn function(&mut self, function: &Function) {
        self.object(&function.name);
        self.function_arguments(&function.parameters);
        self.function_arguments(&function.args);
        self.order_by_exprs(&function.within_group);
        self.opt_expr(function.filter.as_deref());
        if let Some(WindowType::WindowSpec(spec)) = &function.over {
            self.window_spec(spec);
        }
    }

    fn function_arguments(&mut self, arguments: &FunctionArguments) {
        match arguments {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => self.query(query),
            FunctionArguments::List(list) => {
                self.function_args(&list.args);
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::Where(expr)
                        | FunctionArgumentClause::Limit(expr) => self.expr(expr),
                        FunctionArgumentClause::OrderBy(exprs) => self.order_by_exprs(exprs),
                        other => self.words(other),
                    }
                }
            }
        }
    }

    pub(super) fn function_args(&mut self, args: &[FunctionArg]) {
        for arg in args {
            let (FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg)) = arg;
            if let FunctionArgExpr::Expr(expr) = arg {
                self.expr(expr);
            }
        }
    }

    pub(super) fn window_spec(&mut self, spec: &WindowSpec) {
        self.exprs(&spec.partition_by);
        self.order_by_exprs(&spec.order_by);
        if let Some(frame) = &spec.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                if let WindowFrameBound::Preceding(Some(expr))
                | WindowFrameBound::Following(Some(expr)) = bound
                {
                    self.expr(expr);
                }
            }
        }
    }
}
