//! berth-fixture: writes the project's test images as archives, offline,
//! for the demo and for operators trying berth without a registry.
//!
//!   berth-fixture busybox OUT.tar [--name REF]
//!
//! The image is built from Debian's busybox-static package (applets as
//! symlinks, `sh` as its command), as an OCI image layout archive that
//! `berth image import` loads.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::path::PathBuf;
use std::process::ExitCode;

use berth_e2e::fixture::{self, busybox};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "berth-fixture",
    about = "Writes berth's test images as archives"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// busybox-static as an OCI image layout archive.
    Busybox {
        out: PathBuf,
        /// The reference the archive names the image by.
        #[arg(long, default_value = "berth.local/demo/busybox:latest")]
        name: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Busybox { out, name } => {
            if !std::path::Path::new(busybox::BUSYBOX_STATIC).is_file() {
                eprintln!(
                    "berth-fixture: {} missing: apt-get install busybox-static",
                    busybox::BUSYBOX_STATIC
                );
                return ExitCode::FAILURE;
            }
            fixture::write_oci_archive(&busybox::busybox(), &name, &out);
            println!("{}", out.display());
            ExitCode::SUCCESS
        }
    }
}
