//! A terminal chat: `cargo run -p switchboard-client --example terminal_chat -- ws://localhost:3000 alice general`.
//! Every line typed is sent to the room; every event is printed. It survives server restarts.

use std::time::Duration;

use switchboard_client::{Client, ClientConfig, Event, Heartbeat};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://localhost:3000".to_owned());
    let user = args.next().unwrap_or_else(|| "alice".to_owned());
    let room = args.next().unwrap_or_else(|| "general".to_owned());

    let config = ClientConfig::new(url)
        .with_user_id(user)
        .with_heartbeat(Some(Heartbeat {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }));
    let (client, mut events) = Client::connect(config).await?;
    let joined = client.room(&room).join().await?;
    println!("joined {room}: {}", joined.payload);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(line) => {
                    if let Err(error) = client.room(&room).send(line) {
                        eprintln!("not sent: {error}");
                    }
                }
                None => break,
            },
            event = events.recv() => match event {
                Some(Event::Message { user_id, payload, .. }) => {
                    println!("{}: {}", user_id.unwrap_or_default(), payload["content"]);
                }
                Some(Event::Closed(why)) => {
                    println!("closed: {why:?}");
                    break;
                }
                Some(other) => println!("{other:?}"),
                None => break,
            },
        }
    }
    client.close();
    Ok(())
}
