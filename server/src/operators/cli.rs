//! `liveview operators add|list|remove`: managing the dashboard's operators from the
//! machine, on the same database flags as the server (`--data`, `--database-url`).

use std::io::{BufRead, IsTerminal, Write};

use wire::Role;

use super::{Operators, generate_password};
use crate::{config::Config, storage};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum OperatorsCommand {
    /// Add an operator. The password is read from standard input when it is not a
    /// terminal (one line); otherwise, or with --generate-password, one is generated and
    /// printed once.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Generate the password even when standard input is not a terminal.
        #[arg(long)]
        generate_password: bool,
    },
    /// List the operators and their roles.
    List,
    /// Remove an operator and end their sessions (the last admin stays).
    Remove { name: String },
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| "expected viewer, operator or admin".into())
}

impl OperatorsCommand {
    /// Runs the command; what it prints goes to `out`.
    pub async fn run(self, config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
        let url = storage::resolve_url(&config.data, config.database_url.as_deref())?;
        let database = storage::Database::open(&url).await?;
        let operators = Operators::new(database.clone());
        let result = self.act(&operators, out).await;
        database.close().await;
        result
    }

    async fn act(self, operators: &Operators, out: &mut impl Write) -> anyhow::Result<()> {
        match self {
            OperatorsCommand::Add {
                name,
                role,
                generate_password: generate,
            } => {
                let stdin = std::io::stdin();
                let (password, generated) = if generate || stdin.is_terminal() {
                    (generate_password(), true)
                } else {
                    let mut line = String::new();
                    stdin.lock().read_line(&mut line)?;
                    let line = line.trim_end_matches(['\r', '\n']).to_string();
                    if line.is_empty() {
                        anyhow::bail!(
                            "no password on standard input (pipe one in, or pass --generate-password to have one made)"
                        );
                    }
                    (line, false)
                };
                let added = operators.add(&name, role, &password).await?;
                writeln!(out, "added {} ({})", added.name, added.role)?;
                if generated {
                    writeln!(out, "password (shown once): {password}")?;
                }
            }
            OperatorsCommand::List => {
                for operator in operators.list().await? {
                    writeln!(
                        out,
                        "{}\t{}\t{}",
                        operator.name,
                        operator.role,
                        operator.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )?;
                }
            }
            OperatorsCommand::Remove { name } => {
                operators.remove(&name).await?;
                writeln!(out, "removed {name}")?;
            }
        }
        Ok(())
    }
}
