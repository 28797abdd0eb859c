//! `hive builtin <image>`: run one of hive's built-in images in the
//! foreground. The executor starts tasks of `hive/whoami` and `hive/echo`
//! this way inside their namespaces; hidden from `--help` because users
//! reach the images through `hive service create hive/whoami`.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Args, Subcommand};

use crate::images;

#[derive(Debug, Args)]
pub struct BuiltinArgs {
    #[command(subcommand)]
    image: Image,
}

#[derive(Debug, Subcommand)]
enum Image {
    /// HTTP server answering with hostname, addresses and the peer it saw.
    Whoami {
        #[arg(long, default_value = "0.0.0.0:80")]
        listen: SocketAddr,
    },
    /// TCP and UDP echo.
    Echo {
        #[arg(long, default_value = "0.0.0.0:7")]
        listen: SocketAddr,
    },
}

pub fn run(args: BuiltinArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.image {
            Image::Whoami { listen } => images::whoami::serve(listen).await,
            Image::Echo { listen } => images::echo::serve(listen).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
