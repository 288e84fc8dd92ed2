//! podsim: runs a command as root inside a simulated `hostUsers: false` pod.
fn main() {
    eprintln!("podsim: not built yet");
    std::process::exit(2);
}
