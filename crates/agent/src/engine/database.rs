//! What the agent does inside a database's server: wait until it answers, and set its user's
//! password (a rotation: the image reads its password at first start only). Commands run in
//! the server's container as its administrator, secrets passed in the environment, never in
//! arguments.

use alveole_model::{DatabaseEngine, DatabaseSpec};

use crate::engine::runtime::{MoveRuntime, Runtime, RuntimeError};

/// How long a new server may take to answer (its first start makes its data directory).
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// A command for the server's own client, as its administrator, with `ALVEOLE_SQL` run when
/// given, else a check that the server answers: the command and its environment. The check
/// goes over TCP to 127.0.0.1: at its first start the image runs a temporary server on the
/// socket alone (to make the database and user), which must not pass for the real one.
fn client(db: &DatabaseSpec, sql: Option<&str>) -> (Vec<String>, Vec<String>) {
    match db.engine {
        DatabaseEngine::Mariadb => {
            let run = if sql.is_some() {
                r#"exec mariadb --protocol=socket -uroot -e "$ALVEOLE_SQL""#
            } else {
                // 0 once the server answers, even if it refuses the user.
                "exec mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 ping"
            };
            let mut env = vec![format!("MYSQL_PWD={}", db.admin_password.0)];
            env.extend(sql.map(|sql| format!("ALVEOLE_SQL={sql}")));
            (vec!["sh".into(), "-c".into(), run.into()], env)
        }
        // Local socket connections are trusted in the official image (and alveole's): the
        // database's user is the cluster's superuser.
        DatabaseEngine::Postgresql => {
            let run = if sql.is_some() {
                r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_USER" -d "$ALVEOLE_USER" -c "$ALVEOLE_SQL""#
            } else {
                "exec pg_isready -q -h 127.0.0.1 -p 5432"
            };
            let mut env = vec![format!("ALVEOLE_USER={}", db.name)];
            env.extend(sql.map(|sql| format!("ALVEOLE_SQL={sql}")));
            (vec!["sh".into(), "-c".into(), run.into()], env)
        }
    }
}

/// SQL's single-quoted text: quotes doubled, and in MariaDB backslashes too (an escape there,
/// plain text in PostgreSQL).
fn quoted(engine: DatabaseEngine, text: &str) -> String {
    let text = match engine {
        DatabaseEngine::Mariadb => text.replace('\\', "\\\\"),
        DatabaseEngine::Postgresql => text.to_owned(),
    };
    format!("'{}'", text.replace('\'', "''"))
}

/// The statement that sets the database user's password.
fn set_password_sql(db: &DatabaseSpec) -> String {
    match db.engine {
        DatabaseEngine::Mariadb => format!(
            "ALTER USER {}@'%' IDENTIFIED BY {}",
            quoted(db.engine, &db.name),
            quoted(db.engine, &db.password.0)
        ),
        // The name is a database name as validated (lowercase letters, digits, underscores).
        DatabaseEngine::Postgresql => format!(
            "ALTER USER \"{}\" PASSWORD {}",
            db.name,
            quoted(db.engine, &db.password.0)
        ),
    }
}

/// Waits (bounded) until the server answers its administrator.
pub async fn wait_ready<R: Runtime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
) -> Result<(), RuntimeError> {
    let (command, env) = client(db, None);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let outcome = runtime.exec(container, &command, &env).await;
        match outcome {
            Ok(outcome) if outcome.exit_code == 0 => return Ok(()),
            Ok(outcome) if tokio::time::Instant::now() + pause > deadline => {
                return Err(RuntimeError::DatabaseNotReady {
                    database: db.name.clone(),
                    reason: outcome.stderr_tail,
                });
            }
            Err(error) if tokio::time::Instant::now() + pause > deadline => return Err(error),
            _ => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
    }
}

/// Sets the user's password to the one in `db` (the same again changes nothing), once the
/// server answers (it may have just been started again).
pub async fn set_password<R: Runtime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
) -> Result<(), RuntimeError> {
    wait_ready(runtime, container, db).await?;
    let (command, env) = client(db, Some(&set_password_sql(db)));
    let outcome = runtime.exec(container, &command, &env).await?;
    if outcome.exit_code == 0 {
        Ok(())
    } else {
        Err(RuntimeError::DatabaseNotReady {
            database: db.name.clone(),
            reason: format!("its password was not set: {}", outcome.stderr_tail),
        })
    }
}

/// A command run with `sh -c`, secrets and names in its environment.
fn shell(script: &str, db: &DatabaseSpec) -> (Vec<String>, Vec<String>) {
    let env = match db.engine {
        DatabaseEngine::Mariadb => vec![
            format!("MYSQL_PWD={}", db.admin_password.0),
            format!("ALVEOLE_DB={}", db.name),
        ],
        DatabaseEngine::Postgresql => vec![format!("ALVEOLE_USER={}", db.name)],
    };
    (vec!["sh".into(), "-c".into(), script.into()], env)
}

/// A consistent dump of the database in plain SQL on standard output, loadable into an empty
/// database of any name: one transaction's view, the server keeps serving meanwhile.
fn dump_command(db: &DatabaseSpec) -> (Vec<String>, Vec<String>) {
    let script = match db.engine {
        DatabaseEngine::Mariadb => {
            r#"exec mariadb-dump --protocol=socket -uroot --single-transaction --quick --routines --triggers --events --hex-blob "$ALVEOLE_DB""#
        }
        DatabaseEngine::Postgresql => {
            r#"exec pg_dump -U "$ALVEOLE_USER" -d "$ALVEOLE_USER" --no-owner --no-privileges"#
        }
    };
    shell(script, db)
}

/// Empties the database: dropped and made again, owned by its user.
fn reset_command(db: &DatabaseSpec) -> (Vec<String>, Vec<String>) {
    let script = match db.engine {
        DatabaseEngine::Mariadb => {
            r#"exec mariadb --protocol=socket -uroot -e "DROP DATABASE IF EXISTS \`$ALVEOLE_DB\`; CREATE DATABASE \`$ALVEOLE_DB\`""#
        }
        DatabaseEngine::Postgresql => {
            r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_USER" -d postgres -c "DROP DATABASE IF EXISTS \"$ALVEOLE_USER\" WITH (FORCE)" -c "CREATE DATABASE \"$ALVEOLE_USER\" OWNER \"$ALVEOLE_USER\"""#
        }
    };
    shell(script, db)
}

/// Loads plain SQL from standard input into the database, stopping at the first error.
fn load_command(db: &DatabaseSpec) -> (Vec<String>, Vec<String>) {
    let script = match db.engine {
        DatabaseEngine::Mariadb => r#"exec mariadb --protocol=socket -uroot "$ALVEOLE_DB""#,
        DatabaseEngine::Postgresql => {
            r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_USER" -d "$ALVEOLE_USER""#
        }
    };
    shell(script, db)
}

/// Why a command run in the server failed, if it did.
fn failed(
    what: &str,
    db: &DatabaseSpec,
    ran: Result<crate::engine::runtime::ExecOutcome, RuntimeError>,
) -> Result<(), String> {
    match ran {
        Ok(outcome) if outcome.exit_code == 0 => Ok(()),
        Ok(outcome) => Err(format!(
            "the {what} of the database {} exited with {}: {}",
            db.name, outcome.exit_code, outcome.stderr_tail
        )),
        Err(error) => Err(format!(
            "the {what} of the database {} could not run: {}",
            db.name,
            crate::describe(&error)
        )),
    }
}

/// Dumps the database into `output` (a file of the site's volume).
pub async fn dump<R: MoveRuntime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
    output: &std::path::Path,
) -> Result<(), String> {
    let (command, env) = dump_command(db);
    failed(
        "dump",
        db,
        runtime
            .exec_to_file(container, &command, &env, output)
            .await,
    )
}

/// Replaces the database's content with the dump in `input`: emptied, then loaded.
pub async fn load<R: MoveRuntime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
    input: &std::path::Path,
) -> Result<(), String> {
    wait_ready(runtime, container, db)
        .await
        .map_err(|e| crate::describe(&e))?;
    let (command, env) = reset_command(db);
    failed(
        "emptying",
        db,
        runtime.exec(container, &command, &env).await,
    )?;
    let (command, env) = load_command(db);
    failed(
        "loading",
        db,
        runtime
            .exec_from_file(container, &command, &env, input)
            .await,
    )
}

/// Each table's rows in the database, as `table count` lines on standard output, tables named
/// as its dump names them (`kept` in MariaDB, `public.kept` in PostgreSQL).
fn count_command(db: &DatabaseSpec) -> (Vec<String>, Vec<String>) {
    let script = match db.engine {
        DatabaseEngine::Mariadb => {
            r#"set -e; for t in $(mariadb --protocol=socket -uroot -N -e "SELECT table_name FROM information_schema.tables WHERE table_schema = '$ALVEOLE_DB' AND table_type = 'BASE TABLE'"); do printf '%s %s\n' "$t" "$(mariadb --protocol=socket -uroot -N "$ALVEOLE_DB" -e "SELECT COUNT(*) FROM \`$t\`")"; done"#
        }
        DatabaseEngine::Postgresql => {
            r#"set -e; psql -v ON_ERROR_STOP=1 -AtF ' ' -U "$ALVEOLE_USER" -d "$ALVEOLE_USER" -c "SELECT schemaname || '.' || tablename, format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')" | while read -r name quoted; do printf '%s %s\n' "$name" "$(psql -v ON_ERROR_STOP=1 -At -U "$ALVEOLE_USER" -d "$ALVEOLE_USER" -c "SELECT count(*) FROM $quoted")"; done"#
        }
    };
    shell(script, db)
}

/// Each table's rows in the database (a drill compares them with its dump's).
pub async fn row_counts<R: MoveRuntime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
    scratch: &std::path::Path,
) -> Result<crate::backup::dump_counts::Counts, String> {
    let (command, env) = count_command(db);
    let ran = runtime
        .exec_to_file(container, &command, &env, scratch)
        .await;
    failed("count", db, ran)?;
    let text = std::fs::read_to_string(scratch).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(scratch);
    Ok(text
        .lines()
        .filter_map(|line| {
            let (table, rows) = line.rsplit_once(' ')?;
            Some((table.to_owned(), rows.trim().parse().ok()?))
        })
        .collect())
}

/// The scratch database an import is loaded into first.
fn scratch_name(db: &DatabaseSpec) -> String {
    format!("{}_import", db.name)
}

/// Makes the scratch database again, empty; loads `input` into it; then, in MariaDB, empties
/// the database and loads it there too (MariaDB renames no database), in PostgreSQL swaps the
/// scratch in by name. A dump that does not load fails in the scratch: nothing changed.
pub async fn import<R: MoveRuntime + ?Sized>(
    runtime: &R,
    container: &str,
    db: &DatabaseSpec,
    input: &std::path::Path,
) -> Result<(), String> {
    wait_ready(runtime, container, db)
        .await
        .map_err(|e| crate::describe(&e))?;
    let scratch = DatabaseSpec {
        name: scratch_name(db),
        ..db.clone()
    };
    // The scratch is the database's user's to fill (PostgreSQL: its owner; MariaDB: root).
    let (mut command, mut env) = reset_command(&scratch);
    if db.engine == DatabaseEngine::Postgresql {
        env.push(format!("ALVEOLE_OWNER={}", db.name));
        command[2] = r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_OWNER" -d postgres -c "DROP DATABASE IF EXISTS \"$ALVEOLE_USER\" WITH (FORCE)" -c "CREATE DATABASE \"$ALVEOLE_USER\" OWNER \"$ALVEOLE_OWNER\"""#.into();
    }
    failed("scratch", db, runtime.exec(container, &command, &env).await)?;
    let (mut command, mut env) = load_command(&scratch);
    if db.engine == DatabaseEngine::Postgresql {
        env.push(format!("ALVEOLE_OWNER={}", db.name));
        command[2] =
            r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_OWNER" -d "$ALVEOLE_USER""#.into();
    }
    let loaded = failed(
        "import",
        db,
        runtime
            .exec_from_file(container, &command, &env, input)
            .await,
    );
    let drop_scratch = |script: &str| shell(script, &scratch);
    if let Err(error) = loaded {
        let (command, mut env) = match db.engine {
            DatabaseEngine::Mariadb => drop_scratch(
                r#"exec mariadb --protocol=socket -uroot -e "DROP DATABASE IF EXISTS \`$ALVEOLE_DB\`""#,
            ),
            DatabaseEngine::Postgresql => drop_scratch(
                r#"exec psql -q -U "$ALVEOLE_OWNER" -d postgres -c "DROP DATABASE IF EXISTS \"$ALVEOLE_USER\" WITH (FORCE)""#,
            ),
        };
        env.push(format!("ALVEOLE_OWNER={}", db.name));
        let _ = runtime.exec(container, &command, &env).await;
        return Err(error);
    }
    match db.engine {
        DatabaseEngine::Postgresql => {
            let (command, mut env) = drop_scratch(
                r#"exec psql -v ON_ERROR_STOP=1 -q -U "$ALVEOLE_OWNER" -d postgres -c "DROP DATABASE \"$ALVEOLE_OWNER\" WITH (FORCE)" -c "ALTER DATABASE \"$ALVEOLE_USER\" RENAME TO \"$ALVEOLE_OWNER\"""#,
            );
            env.push(format!("ALVEOLE_OWNER={}", db.name));
            failed("swap", db, runtime.exec(container, &command, &env).await)
        }
        DatabaseEngine::Mariadb => {
            let (command, env) = drop_scratch(
                r#"exec mariadb --protocol=socket -uroot -e "DROP DATABASE IF EXISTS \`$ALVEOLE_DB\`""#,
            );
            failed(
                "clean-up",
                db,
                runtime.exec(container, &command, &env).await,
            )?;
            load(runtime, container, db, input).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alveole_model::backup::WireSecret;

    fn db(engine: DatabaseEngine) -> DatabaseSpec {
        DatabaseSpec {
            name: "shop".into(),
            engine,
            image: alveole_model::ImageRef::parse("mariadb:10.11").unwrap(),
            limits: Default::default(),
            quota_bytes: 1 << 30,
            password: WireSecret("it's".into()),
            admin_password: WireSecret("root".into()),
        }
    }

    #[test]
    fn secrets_go_in_the_environment_and_quotes_are_doubled() {
        let maria = db(DatabaseEngine::Mariadb);
        let (command, env) = client(&maria, Some(&set_password_sql(&maria)));
        assert!(command.iter().all(|arg| !arg.contains("it''s")));
        assert!(env.contains(&"MYSQL_PWD=root".to_owned()));
        assert!(env.contains(&"ALVEOLE_SQL=ALTER USER 'shop'@'%' IDENTIFIED BY 'it''s'".into()));
        let pg = db(DatabaseEngine::Postgresql);
        assert_eq!(
            set_password_sql(&pg),
            "ALTER USER \"shop\" PASSWORD 'it''s'"
        );
    }
}
