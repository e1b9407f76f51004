//! The expression half of the walk: operators, constructs, function calls
//! (judged by volatility), their arguments, ORDER BY and window clauses.

use sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, InTarget, ObjectName, OrderByExpr, Subscript, WindowFrameBound, WindowSpec,
    WindowType,
};

use super::super::names::{is_construct, server_local_function, split_name};
use super::{plain_wildcard, require, Node, Walk};

impl<'a> Walk<'a> {
    pub(super) fn expr(&mut self, expr: &'a Expr) -> Option<()> {
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
            | Expr::Collate { expr: inner, .. }
            | Expr::Extract { expr: inner, .. }
            | Expr::Ceil { expr: inner, .. }
            | Expr::Floor { expr: inner, .. }
            | Expr::IsJson { expr: inner, .. }
            | Expr::IsNormalized { expr: inner, .. } => self.push(inner),
            Expr::Cast { expr, format, .. } => {
                require(format.is_none())?;
                self.push(expr);
            }
            Expr::Interval(interval) => self.push(&interval.value),
            // Operators: see the module documentation.
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
            } => {
                self.push(left);
                self.push(right);
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
                self.push(expr);
                self.push(pattern);
                self.push_opt(escape_char.as_deref());
            }
            Expr::In {
                expr,
                target,
                global,
                ..
            } => {
                require(!global)?;
                self.push(expr);
                match target {
                    InTarget::List(list) => self.push_all(list),
                    InTarget::Subquery(query) => self.todo.push(Node::Query(query)),
                    _ => return None,
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.push(expr);
                self.push(low);
                self.push(high);
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.push(expr);
                self.push_opt(substring_from.as_deref());
                self.push_opt(substring_for.as_deref());
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.push(expr);
                self.push_opt(trim_what.as_deref());
                self.push_all(trim_characters.as_deref().unwrap_or_default());
            }
            Expr::Overlay {
                expr,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.push(expr);
                self.push(overlay_what);
                self.push(overlay_from);
                self.push_opt(overlay_for.as_deref());
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                self.push_opt(operand.as_deref());
                for when in conditions {
                    self.push(&when.condition);
                    self.push(&when.result);
                }
                self.push_opt(else_result.as_deref());
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                self.todo.push(Node::Query(subquery))
            }
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                sets.iter().for_each(|set| self.push_all(set));
            }
            Expr::Tuple(exprs) => self.push_all(exprs),
            Expr::Array(array) => self.push_all(&array.elem),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.push(root);
                for access in access_chain {
                    match access {
                        AccessExpr::Dot(expr) => self.push(expr),
                        AccessExpr::Subscript(Subscript::Index { index }) => self.push(index),
                        AccessExpr::Subscript(Subscript::Slice {
                            lower_bound,
                            upper_bound,
                            stride,
                        }) => {
                            self.push_opt(lower_bound.as_ref());
                            self.push_opt(upper_bound.as_ref());
                            self.push_opt(stride.as_ref());
                        }
                    }
                }
            }
            Expr::Function(function) => self.function(function)?,
            _ => return None,
        }
        Some(())
    }

    pub(super) fn function(&mut self, function: &'a Function) -> Option<()> {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment: _,
            over,
        } = function;
        require(!uses_odbc_syntax && matches!(parameters, FunctionArguments::None))?;
        if !is_construct(name, args) {
            self.call(name)?;
        }
        match args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(query) => self.todo.push(Node::Query(query)),
            FunctionArguments::List(list) => {
                self.function_args(&list.args)?;
                for clause in &list.clauses {
                    match clause {
                        FunctionArgumentClause::OrderBy(exprs) => self.order_by(exprs)?,
                        FunctionArgumentClause::IgnoreOrRespectNulls(_)
                        | FunctionArgumentClause::JsonNullClause(_)
                        | FunctionArgumentClause::JsonReturningClause(_) => {}
                        _ => return None,
                    }
                }
            }
        }
        self.order_by(within_group)?;
        self.push_opt(filter.as_deref());
        if let Some(WindowType::WindowSpec(spec)) = over {
            self.window(spec)?;
        }
        Some(())
    }

    /// Whether calling the function `name` is allowed.
    pub(super) fn call(&self, name: &ObjectName) -> Option<()> {
        let (schema, name) = split_name(name)?;
        require(!server_local_function(&name) && self.volatility.is_safe(schema.as_deref(), &name))
    }

    pub(super) fn function_args(&mut self, args: &'a [FunctionArg]) -> Option<()> {
        for arg in args {
            let arg = match arg {
                FunctionArg::Named { arg, .. } | FunctionArg::Unnamed(arg) => arg,
                FunctionArg::ExprNamed { name, arg, .. } => {
                    self.push(name);
                    arg
                }
            };
            match arg {
                FunctionArgExpr::Expr(expr) => self.push(expr),
                FunctionArgExpr::QualifiedWildcard(_) | FunctionArgExpr::Wildcard => {}
                FunctionArgExpr::WildcardWithOptions(options) => require(plain_wildcard(options))?,
            }
        }
        Some(())
    }

    pub(super) fn order_by(&mut self, exprs: &'a [OrderByExpr]) -> Option<()> {
        for order_by in exprs {
            require(order_by.with_fill.is_none())?;
            self.push(&order_by.expr);
        }
        Some(())
    }

    pub(super) fn window(&mut self, spec: &'a WindowSpec) -> Option<()> {
        self.push_all(&spec.partition_by);
        self.order_by(&spec.order_by)?;
        if let Some(frame) = &spec.window_frame {
            for bound in std::iter::once(&frame.start_bound).chain(&frame.end_bound) {
                if let WindowFrameBound::Preceding(Some(expr))
                | WindowFrameBound::Following(Some(expr)) = bound
                {
                    self.push(expr);
                }
            }
        }
        Some(())
    }
}
