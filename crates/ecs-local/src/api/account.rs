//! Account settings and capacity providers, the calls the AWS CLI's common
//! flows touch: `ListAccountSettings`, `PutAccountSetting`,
//! `PutAccountSettingDefault`, `DeleteAccountSetting` (kept in the state,
//! for the account as a whole: there are no IAM principals here) and
//! `DescribeCapacityProviders` (the two Fargate providers every account
//! has; ecs-local runs EC2 tasks only).

use super::{paginate, ApiError};
use crate::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The settings an account starts with, as ECS reports them for a new
/// account, and the values each accepts.
const DEFAULTS: &[(&str, &str, &[&str])] = &[
    ("awsvpcTrunking", "disabled", &["enabled", "disabled"]),
    (
        "containerInsights",
        "disabled",
        &["enabled", "disabled", "enhanced"],
    ),
    (
        "containerInstanceLongArnFormat",
        "enabled",
        &["enabled", "disabled"],
    ),
    ("dualStackIPv6", "disabled", &["enabled", "disabled"]),
    ("fargateFIPSMode", "disabled", &["enabled", "disabled"]),
    ("fargateTaskRetirementWaitPeriod", "7", &["0", "7", "14"]),
    ("guardDutyActivate", "off", &["on", "off"]),
    ("serviceLongArnFormat", "enabled", &["enabled", "disabled"]),
    ("tagResourceAuthorization", "on", &["on", "off"]),
    ("taskLongArnFormat", "enabled", &["enabled", "disabled"]),
    (
        "defaultLogDriverMode",
        "non-blocking",
        &["blocking", "non-blocking"],
    ),
];

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter(message.into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListRequest {
    name: Option<String>,
    value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PutRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
    principal_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteRequest {
    #[serde(default)]
    name: String,
    principal_arn: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Setting {
    name: String,
    value: String,
    principal_arn: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn root(ctx: &Context) -> String {
    format!("arn:aws:iam::{}:root", ctx.arns.account())
}

/// Settings are kept for the account as a whole: a principal other than
/// its root is refused rather than silently widened.
fn whole_account(ctx: &Context, principal: Option<&str>) -> Result<(), ApiError> {
    match principal.filter(|p| *p != root(ctx)) {
        Some(other) => Err(invalid(format!(
            "ecs-local keeps account settings for the whole account only, not for {other}."
        ))),
        None => Ok(()),
    }
}

fn allowed(name: &str) -> Result<&'static [&'static str], ApiError> {
    DEFAULTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, values)| *values)
        .ok_or_else(|| invalid(format!("Unknown account setting '{name}'.")))
}

fn setting(ctx: &Context, name: &str, value: &str, kind: &'static str) -> Setting {
    Setting {
        name: name.to_owned(),
        value: value.to_owned(),
        principal_arn: root(ctx),
        kind,
    }
}

pub(super) fn list(ctx: &Context, req: ListRequest) -> Result<Value, ApiError> {
    let chosen = ctx.store.read(|st| {
        DEFAULTS
            .iter()
            .filter(|(name, _, _)| req.name.as_deref().is_none_or(|n| n == *name))
            .map(|(name, default, _)| match st.account_settings.get(name) {
                Some(value) => setting(ctx, name, value, "user"),
                None => setting(ctx, name, default, "aws_managed"),
            })
            .filter(|s| req.value.as_deref().is_none_or(|v| v == s.value))
            .collect::<Vec<_>>()
    });
    let (settings, next_token) = paginate(
        chosen
            .into_iter()
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
            .collect(),
        req.next_token.as_deref(),
        req.max_results,
    )?;
    let mut answer = json!({ "settings": settings });
    if let Some(token) = next_token {
        answer["nextToken"] = json!(token);
    }
    Ok(answer)
}

/// `PutAccountSetting` and `PutAccountSettingDefault`: both set the value
/// for the whole account.
pub(super) fn put(ctx: &Context, req: PutRequest) -> Result<Value, ApiError> {
    let values = allowed(&req.name)?;
    if !values.contains(&req.value.as_str()) {
        return Err(invalid(format!(
            "Invalid value '{}' for {}; use one of: {}.",
            req.value,
            req.name,
            values.join(", ")
        )));
    }
    whole_account(ctx, req.principal_arn.as_deref())?;
    ctx.store.update(|st| {
        st.account_settings
            .insert(req.name.clone(), req.value.clone());
        Ok::<_, ApiError>(())
    })?;
    Ok(json!({ "setting": setting(ctx, &req.name, &req.value, "user") }))
}

pub(super) fn delete(ctx: &Context, req: DeleteRequest) -> Result<Value, ApiError> {
    allowed(&req.name)?;
    whole_account(ctx, req.principal_arn.as_deref())?;
    let removed = ctx
        .store
        .update(|st| Ok::<_, ApiError>(st.account_settings.remove(&req.name)))?;
    let value = removed.unwrap_or_default();
    Ok(json!({ "setting": setting(ctx, &req.name, &value, "user") }))
}

/// The built-in Fargate capacity providers; any other name is a failure.
pub(super) fn describe_capacity_providers(ctx: &Context, body: Value) -> Result<Value, ApiError> {
    let provider = |name: &str| {
        json!({
            "capacityProviderArn": format!(
                "arn:aws:ecs:{}:{}:capacity-provider/{name}",
                ctx.arns.region(),
                ctx.arns.account()
            ),
            "name": name,
            "status": "ACTIVE",
            "tags": [],
        })
    };
    let builtin = ["FARGATE", "FARGATE_SPOT"];
    let asked: Vec<String> = body["capacityProviders"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_else(|| builtin.iter().map(|s| (*s).to_owned()).collect());
    let mut providers = Vec::new();
    let mut failures = Vec::new();
    for name in &asked {
        let short = name.rsplit('/').next().unwrap_or(name);
        if builtin.contains(&short) {
            providers.push(provider(short));
        } else {
            failures.push(json!({"arn": name, "reason": "MISSING"}));
        }
    }
    Ok(json!({ "capacityProviders": providers, "failures": failures }))
}
