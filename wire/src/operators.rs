//! The dashboard's operators: who may watch and who may act (`/api/session`,
//! `/api/operators`).

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// What an operator may do. Each role may do everything the one before it may.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches and reads: the canvas, the cards, the status page, the audit log.
    Viewer,
    /// Also uses the controls: delays, step mode, faults, simulation, stopping and
    /// starting servers, pausing and requeueing queues.
    Operator,
    /// Also manages operators.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the dashboard lets people in (`--dashboard-auth`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No sign-in: everyone who reaches the dashboard is an operator. Only on loopback.
    Anonymous,
    /// Operators sign in with a name and password.
    Login,
}

/// `POST /api/session`: sign in.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    pub name: String,
    pub password: String,
}

/// `GET /api/session` (and the answer to a sign-in): who this browser is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The operator's name; `anonymous` without sign-in.
    pub name: String,
    pub role: Role,
    pub auth: AuthMode,
    /// When the session ends (none without sign-in).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::rfc3339::read_option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// One operator account, as `GET /api/operators` lists it (never its password).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorInfo {
    pub name: String,
    pub role: Role,
    #[serde(deserialize_with = "crate::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "crate::rfc3339::write"))]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
}

/// `GET /api/operators`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorList {
    pub operators: Vec<OperatorInfo>,
}

/// `POST /api/operators`: a new account. Without a password one is generated and
/// answered once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperator {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The answer to `POST /api/operators`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOperator {
    pub operator: OperatorInfo,
    /// The generated password, shown this once; none when the request gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, round_trip};

    #[test]
    fn roles_are_ordered_by_what_they_may_do_and_named_in_lowercase() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).expect("json"), role.as_str());
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn session_info_keeps_its_wire_names() {
        let info = SessionInfo {
            name: "ada".into(),
            role: Role::Operator,
            auth: AuthMode::Login,
            expires_at: Some(at(0)),
        };
        let json = round_trip(&info);
        assert_eq!(json["auth"], "login");
        assert_eq!(json["role"], "operator");
        assert!(json["expiresAt"].is_string());
        let created = CreatedOperator {
            operator: OperatorInfo {
                name: "bob".into(),
                role: Role::Viewer,
                created_at: at(1),
            },
            generated_password: Some("x".into()),
        };
        assert_eq!(round_trip(&created)["generatedPassword"], "x");
    }

    #[test]
    fn a_sign_in_with_unknown_fields_is_refused() {
        assert!(serde_json::from_str::<SignIn>(r#"{"name":"a","password":"b","role":"admin"}"#).is_err());
    }
}
