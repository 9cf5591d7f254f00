//! The queues' names, the delivery channel each belongs to, and the tiers a job walks.

use std::{fmt, str::FromStr, time::Duration};

use serde::Serialize;

/// The delivery channel a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Email,
    InApp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::InApp => "in-app",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum QueueName {
    #[serde(rename = "mail")]
    Mail,
    #[serde(rename = "mail-retry-1")]
    MailRetry1,
    #[serde(rename = "mail-retry-2")]
    MailRetry2,
    #[serde(rename = "mail-dlq")]
    MailDlq,
    #[serde(rename = "inapp")]
    Inapp,
    #[serde(rename = "inapp-retry")]
    InappRetry,
    #[serde(rename = "inapp-dlq")]
    InappDlq,
}

impl QueueName {
    pub const ALL: [Self; 7] = [
        Self::Mail,
        Self::MailRetry1,
        Self::MailRetry2,
        Self::MailDlq,
        Self::Inapp,
        Self::InappRetry,
        Self::InappDlq,
    ];
    /// The queues a mail worker takes jobs from.
    pub const MAIL_WORK: [Self; 3] = [Self::Mail, Self::MailRetry1, Self::MailRetry2];
    /// The queues an in-app worker takes jobs from.
    pub const INAPP_WORK: [Self; 2] = [Self::Inapp, Self::InappRetry];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::MailRetry1 => "mail-retry-1",
            Self::MailRetry2 => "mail-retry-2",
            Self::MailDlq => "mail-dlq",
            Self::Inapp => "inapp",
            Self::InappRetry => "inapp-retry",
            Self::InappDlq => "inapp-dlq",
        }
    }

    pub fn channel(self) -> Channel {
        match self {
            Self::Mail | Self::MailRetry1 | Self::MailRetry2 | Self::MailDlq => Channel::Email,
            Self::Inapp | Self::InappRetry | Self::InappDlq => Channel::InApp,
        }
    }

    /// Where a job goes after a failure that may pass, and how long it waits there
    /// (before `--time-scale`); `None` when the tiers are exhausted.
    pub fn next_tier(self) -> Option<(Self, Duration)> {
        match self {
            Self::Mail => Some((Self::MailRetry1, Duration::from_secs(5 * 60))),
            Self::MailRetry1 => Some((Self::MailRetry2, Duration::from_secs(30 * 60))),
            Self::Inapp => Some((Self::InappRetry, Duration::from_secs(60))),
            Self::MailRetry2 | Self::MailDlq | Self::InappRetry | Self::InappDlq => None,
        }
    }

    pub fn dead_letter(self) -> Self {
        match self.channel() {
            Channel::Email => Self::MailDlq,
            Channel::InApp => Self::InappDlq,
        }
    }

    /// Where a job requeued from a dead-letter queue starts again.
    pub fn first(self) -> Self {
        match self.channel() {
            Channel::Email => Self::Mail,
            Channel::InApp => Self::Inapp,
        }
    }

    pub fn is_dead_letter(self) -> bool {
        matches!(self, Self::MailDlq | Self::InappDlq)
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueName {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|queue| queue.as_str() == name)
            .ok_or_else(|| format!("no queue named {name:?}"))
    }
}

/// Stored as its name; a row naming no queue is an error when read, never taken for
/// another queue.
impl<DB: sqlx::Database> sqlx::Type<DB> for QueueName
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for QueueName
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(name.parse::<Self>()?)
    }
}
