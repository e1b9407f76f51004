//! Recognition of the configured upsert shapes: owns the decision whether
//! one parsed statement is an upsert of some rule, and the building of its
//! [`Template`] (value sources, key positions, reply, `DO UPDATE` text).

use std::collections::BTreeSet;

use sqlparser::ast::{
    CastKind, ConflictTarget, DataType, DoUpdate, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Insert, ObjectNamePart, OnConflict, OnConflictAction, OnInsert, Query,
    SelectItem, SetExpr, Statement, TableObject, TypedString, UnaryOperator, Value, Values,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{ident, name_matches, Reply, RuleShape, Template, UpdateAction, ValueSource};

/// The template of `statement` under the first rule it matches, if any.
pub(super) fn recognize(statement: &Statement, rules: &[RuleShape]) -> Option<Template> {
    match statement {
        Statement::Query(query) => recognize_call(query, rules),
        Statement::Insert(insert) => recognize_insert(insert, rules),
        _ => None,
    }
}

/// Function form: `SELECT <fn>(args) [AS alias]` and nothing else.
fn recognize_call(query: &Query, rules: &[RuleShape]) -> Option<Template> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [item] = select.projection.as_slice() else {
        return None;
    };
    // Whatever else the query carries (WITH, DISTINCT, INTO, FROM, WHERE,
    // GROUP BY, HAVING, WINDOW, ORDER BY, LIMIT, FOR UPDATE, ...) shows in
    // its text; requiring the bare text rules all of it out at once.
    if query.to_string() != format!("SELECT {item}") {
        return None;
    }
    let (function, alias) = match item {
        SelectItem::UnnamedExpr(Expr::Function(function)) => (function, None),
        SelectItem::ExprWithAlias {
            expr: Expr::Function(function),
            alias,
        } => (function, Some(alias)),
        _ => return None,
    };
    let args = positional_arguments(function)?;
    let column = match alias {
        Some(alias) => ident(alias),
        None => match function.name.0.last()? {
            ObjectNamePart::Identifier(name) => ident(name),
            ObjectNamePart::Function(_) => return None,
        },
    };
    rules.iter().enumerate().find_map(|(index, rule)| {
        let wanted = rule.function.as_deref()?;
        if !name_matches(&function.name, wanted) {
            return None;
        }
        call_template(index, rule, &args, &column)
    })
}

/// The arguments of a plain call `f(a, b, ...)`: positional only, no
/// DISTINCT, ORDER BY, FILTER, OVER, WITHIN GROUP or the like.
fn positional_arguments(function: &Function) -> Option<Vec<&Expr>> {
    let Function {
        name: _,
        uses_odbc_syntax,
        parameters,
        args,
        within_group,
        filter,
        null_treatment,
        over,
    } = function;
    if *uses_odbc_syntax
        || !matches!(parameters, FunctionArguments::None)
        || !within_group.is_empty()
        || filter.is_some()
        || null_treatment.is_some()
        || over.is_some()
    {
        return None;
    }
    let FunctionArguments::List(list) = args else {
        return None;
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return None;
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Some(expr),
            _ => None,
        })
        .collect()
}

/// The template of a call with `args` under function rule `rule`.
fn call_template(index: usize, rule: &RuleShape, args: &[&Expr], column: &str) -> Option<Template> {
    let total = rule.arguments.len();
    let required = total.saturating_sub(rule.defaults.len());
    if args.len() < required || args.len() > total {
        return None;
    }
    let values = rule
        .arguments
        .iter()
        .enumerate()
        .map(|(position, name)| match args.get(position) {
            Some(arg) => value_source(arg),
            None => {
                let (_, text) = rule.defaults.iter().find(|(default, _)| default == name)?;
                Some(ValueSource::Literal {
                    text: text.clone(),
                    cast: None,
                })
            }
        })
        .collect::<Option<Vec<_>>>()?;
    let key = positions(&rule.key, &rule.arguments)?;
    Some(Template {
        rule: index,
        columns: rule.arguments.clone(),
        params: params(&values),
        values,
        key,
        reply: Reply::FunctionRow {
            column: column.to_owned(),
        },
        update: None,
        table_alias: None,
    })
}

/// Table form: `INSERT INTO <table> [AS alias] (cols) VALUES (vals)
/// ON CONFLICT (keys) DO UPDATE SET ... [WHERE ...]` and nothing else.
fn recognize_insert(insert: &Insert, rules: &[RuleShape]) -> Option<Template> {
    let Insert {
        insert_token: _,
        optimizer_hints,
        or,
        ignore,
        into,
        table,
        table_alias,
        columns,
        by_name,
        overwrite,
        source,
        assignments,
        partitioned,
        after_columns,
        overriding,
        has_table_keyword,
        on,
        returning,
        output,
        replace_into,
        priority,
        insert_alias,
        settings,
        format_clause,
        multi_table_insert_type,
        multi_table_into_clauses,
        multi_table_when_clauses,
        multi_table_else_clause,
    } = insert;
    let plain = optimizer_hints.is_empty()
        && or.is_none()
        && !ignore
        && *into
        && !by_name
        && !overwrite
        && assignments.is_empty()
        && partitioned.is_none()
        && after_columns.is_empty()
        && overriding.is_none()
        && !has_table_keyword
        && returning.is_none()
        && output.is_none()
        && !replace_into
        && priority.is_none()
        && insert_alias.is_none()
        && settings.is_none()
        && format_clause.is_none()
        && multi_table_insert_type.is_none()
        && multi_table_into_clauses.is_empty()
        && multi_table_when_clauses.is_empty()
        && multi_table_else_clause.is_none();
    if !plain {
        return None;
    }
    let TableObject::TableName(table) = table else {
        return None;
    };
    let row = single_values_row(source.as_deref()?)?;
    let columns = columns
        .iter()
        .map(|column| match column.0.as_slice() {
            [ObjectNamePart::Identifier(name)] => Some(ident(name)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let distinct: BTreeSet<&String> = columns.iter().collect();
    if columns.is_empty() || row.len() != columns.len() || distinct.len() != columns.len() {
        return None;
    }
    let Some(OnInsert::OnConflict(OnConflict {
        conflict_target:
            Some(ConflictTarget::Columns {
                columns: target,
                predicate: None,
            }),
        action: OnConflictAction::DoUpdate(update),
    })) = on
    else {
        return None;
    };
    let target: BTreeSet<String> = target.iter().map(ident).collect();
    let update = update_action(update)?;
    let values = row.iter().map(value_source).collect::<Option<Vec<_>>>()?;
    let table_alias = table_alias.as_ref().map(|alias| alias.alias.to_string());
    rules.iter().enumerate().find_map(|(index, rule)| {
        let wanted = rule.table.as_deref()?;
        let key_set: BTreeSet<String> = rule.key.iter().cloned().collect();
        if !name_matches(table, wanted) || key_set != target {
            return None;
        }
        Some(Template {
            rule: index,
            key: positions(&rule.key, &columns)?,
            columns: columns.clone(),
            params: params(&values),
            values: values.clone(),
            reply: Reply::Insert,
            update: Some(update.clone()),
            table_alias: table_alias.clone(),
        })
    })
}

/// The one row of a source that is `VALUES (...)` and nothing more (no
/// WITH, ORDER BY, LIMIT, second row, ROW keyword, ...).
fn single_values_row(source: &Query) -> Option<&[Expr]> {
    if source.to_string() != source.body.to_string() {
        return None;
    }
    let SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows,
    }) = source.body.as_ref()
    else {
        return None;
    };
    let [row] = rows.as_slice() else {
        return None;
    };
    Some(&row.content)
}

/// `DO UPDATE`'s body as an [`UpdateAction`]; None without assignments or
/// when it uses a `$n` parameter (which would mean something else in the
/// bulk statement).
fn update_action(update: &DoUpdate) -> Option<UpdateAction> {
    if update.assignments.is_empty() {
        return None;
    }
    let assignments: Vec<String> = update.assignments.iter().map(ToString::to_string).collect();
    let action = UpdateAction {
        assignments: assignments.join(", "),
        condition: update.selection.as_ref().map(ToString::to_string),
    };
    let text = action.to_string();
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, &text)
        .tokenize()
        .ok()?;
    if tokens
        .iter()
        .any(|token| matches!(token, Token::Placeholder(_)))
    {
        return None;
    }
    Some(action)
}

/// Where a value written as an argument or in VALUES comes from: `$n`,
/// `$n::type`, `CAST($n AS type)`, a literal, `'lit'::type`, `CAST('lit' AS
/// type)` or `type 'lit'`; None for anything else.
fn value_source(expr: &Expr) -> Option<ValueSource> {
    let (bare, cast) = match expr {
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
        } => (bare_value(expr)?, Some(type_name(data_type))),
        Expr::TypedString(TypedString {
            data_type,
            value,
            uses_odbc_syntax: false,
        }) => (
            Bare::Literal(Some(string_literal(&value.value)?)),
            Some(type_name(data_type)),
        ),
        other => (bare_value(other)?, None),
    };
    Some(match bare {
        Bare::Param(index) => ValueSource::Param { index, cast },
        Bare::Literal(text) => ValueSource::Literal { text, cast },
    })
}

/// A value without its cast.
enum Bare {
    Param(usize),
    Literal(Option<String>),
}

/// `$n`, NULL, TRUE/FALSE, a number (possibly negated) or a string literal.
fn bare_value(expr: &Expr) -> Option<Bare> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Placeholder(placeholder) => param_index(placeholder).map(Bare::Param),
            Value::Null => Some(Bare::Literal(None)),
            Value::Boolean(value) => Some(Bare::Literal(Some(value.to_string()))),
            Value::Number(digits, false) => Some(Bare::Literal(Some(digits.clone()))),
            other => string_literal(other).map(|text| Bare::Literal(Some(text))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(digits, false) => Some(Bare::Literal(Some(format!("-{digits}")))),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The contents of a string literal Postgres accepts as text (the tokenizer
/// already removed quotes and decoded escapes).
fn string_literal(value: &Value) -> Option<String> {
    match value {
        Value::SingleQuotedString(text)
        | Value::EscapedStringLiteral(text)
        | Value::UnicodeStringLiteral(text) => Some(text.clone()),
        Value::DollarQuotedString(dollar) => Some(dollar.value.clone()),
        _ => None,
    }
}

/// `$n` as 0-based index; None for `$0`, `?` and the like.
fn param_index(placeholder: &str) -> Option<usize> {
    let digits = placeholder.strip_prefix('$')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_sub(1)
}

/// Highest `$n` among `values` (0 if none).
fn params(values: &[ValueSource]) -> usize {
    values
        .iter()
        .filter_map(|value| match value {
            ValueSource::Param { index, .. } => Some(index + 1),
            ValueSource::Literal { .. } => None,
        })
        .max()
        .unwrap_or(0)
}

/// A type's SQL text, lower-cased outside double quotes.
fn type_name(data_type: &DataType) -> String {
    let mut quoted = false;
    data_type
        .to_string()
        .chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted {
                c
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// For each of `names`, its position in `within`; None if one is missing.
fn positions(names: &[String], within: &[String]) -> Option<Vec<usize>> {
    names
        .iter()
        .map(|name| within.iter().position(|candidate| candidate == name))
        .collect()
}
