//! A small real SMTP server for tests: speaks enough of RFC 5321 for a mail client (greeting, EHLO/HELO, MAIL,
//! RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), hands every accepted message to the test, and refuses
//! recipients as a test scripts it.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::harness::within;

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Mail {
    /// The envelope sender (MAIL FROM).
    pub from: String,
    /// The envelope recipients (RCPT TO) the server accepted.
    pub recipients: Vec<String>,
    /// The message as transmitted (headers and body), dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body with quoted-printable soft line breaks removed.
    pub fn body(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        body.replace("=\r\n", "")
    }
}

/// Replies to RCPT TO, per recipient: scripted ones are used once each, in order; `always` forever.
#[derive(Default)]
struct Script {
    once: HashMap<String, VecDeque<String>>,
    always: HashMap<String, String>,
    /// The next message is answered only once the test releases it.
    hold: Option<Hold>,
}

struct Hold {
    arrived: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// A message the server has received but not yet answered (see [`SmtpServer::hold_next`]).
pub struct Held {
    arrived: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Held {
    /// Waits until the client has sent the whole message and awaits the answer.
    pub async fn arrived(&mut self) {
        within("a held message", &mut self.arrived)
            .await
            .expect("the SMTP server is running");
    }

    /// Accepts the message (250).
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl Script {
    fn rcpt_reply(&mut self, recipient: &str) -> Option<String> {
        if let Some(reply) = self.once.get_mut(recipient).and_then(VecDeque::pop_front) {
            return Some(reply);
        }
        self.always.get(recipient).cloned()
    }
}

/// The server, listening on an ephemeral port of 127.0.0.1 until dropped.
pub struct SmtpServer {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    mail: mpsc::UnboundedReceiver<Mail>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP listener");
        let addr = listener.local_addr().expect("SMTP listener address");
        let script = Arc::new(Mutex::new(Script::default()));
        let (sender, mail) = mpsc::unbounded_channel();
        let shared = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone(), sender.clone()));
            }
        });
        SmtpServer {
            addr,
            script,
            mail,
            task,
        }
    }

    /// The URL to give the service (`--smtp-url`).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The next RCPT TO `recipient` gets `reply` (e.g. "451 4.3.0 Try again later") instead of 250.
    pub fn refuse_once(&self, recipient: &str, reply: &str) {
        let mut script = self.script.lock().expect("script lock");
        script
            .once
            .entry(recipient.to_owned())
            .or_default()
            .push_back(reply.to_owned());
    }

    /// Every RCPT TO `recipient` gets `reply` (e.g. "550 5.1.1 No such mailbox").
    pub fn refuse_always(&self, recipient: &str, reply: &str) {
        let mut script = self.script.lock().expect("script lock");
        script.always.insert(recipient.to_owned(), reply.to_owned());
    }

    /// The next message's final answer (250 after the data) waits until the test releases it: a delivery in
    /// flight, for as long as the test needs.
    pub fn hold_next(&self) -> Held {
        let (arrived_tx, arrived) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        self.script.lock().expect("script lock").hold = Some(Hold {
            arrived: arrived_tx,
            release: release_rx,
        });
        Held { arrived, release }
    }

    /// The next message accepted, waiting for it.
    pub async fn next_mail(&mut self) -> Mail {
        within("a message at the SMTP server", self.mail.recv())
            .await
            .expect("the SMTP server is running")
    }

    /// Every message accepted until (and with) the first one for `recipient`, in the order they arrived.
    pub async fn mail_until(&mut self, recipient: &str) -> Vec<Mail> {
        let mut received = Vec::new();
        loop {
            let mail = self.next_mail().await;
            let done = mail.recipients.iter().any(|r| r == recipient);
            received.push(mail);
            if done {
                return received;
            }
        }
    }
}

/// The address in `FROM:<a@b> ...` or `TO:<a@b>`.
fn path_address(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |at| at + 1);
    let end = argument[start..]
        .find('>')
        .map_or(argument.len(), |at| start + at);
    argument[start..end].trim().to_owned()
}

/// The next line the client sent, without its line end; None once the connection is closed.
async fn next_line(lines: &mut BufReader<OwnedReadHalf>) -> Option<String> {
    let mut line = String::new();
    match lines.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

async fn session(stream: TcpStream, script: Arc<Mutex<Script>>, sink: mpsc::UnboundedSender<Mail>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut reply = async |text: &str| write.write_all(format!("{text}\r\n").as_bytes()).await;
    if reply("220 smtp.test ESMTP ready").await.is_err() {
        return;
    }
    let mut from = None::<String>;
    let mut recipients = Vec::new();
    while let Some(command) = next_line(&mut lines).await {
        let (verb, argument) = command.split_once([' ', ':']).unwrap_or((&command, ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => "250-smtp.test greets you\r\n250-8BITMIME\r\n250 SIZE 10485760".to_owned(),
            "HELO" => "250 smtp.test".to_owned(),
            "MAIL" => {
                from = Some(path_address(argument));
                recipients.clear();
                "250 2.1.0 OK".to_owned()
            }
            "RCPT" => {
                let recipient = path_address(argument);
                let refused = script.lock().expect("script lock").rcpt_reply(&recipient);
                match refused {
                    Some(refusal) => refusal,
                    None => {
                        recipients.push(recipient);
                        "250 2.1.5 OK".to_owned()
                    }
                }
            }
            "DATA" if from.is_some() && !recipients.is_empty() => {
                if reply("354 End data with <CR><LF>.<CR><LF>").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    let Some(text) = next_line(&mut lines).await else {
                        return;
                    };
                    if text == "." {
                        break;
                    }
                    data.push_str(text.strip_prefix('.').unwrap_or(&text));
                    data.push_str("\r\n");
                }
                let hold = script.lock().expect("script lock").hold.take();
                if let Some(hold) = hold {
                    let _ = hold.arrived.send(());
                    if hold.release.await.is_err() {
                        return;
                    }
                }
                let _ = sink.send(Mail {
                    from: from.take().unwrap_or_default(),
                    recipients: std::mem::take(&mut recipients),
                    data,
                });
                "250 2.0.0 Queued".to_owned()
            }
            "DATA" => "503 5.5.1 MAIL and RCPT first".to_owned(),
            "RSET" => {
                from = None;
                recipients.clear();
                "250 2.0.0 OK".to_owned()
            }
            "NOOP" => "250 2.0.0 OK".to_owned(),
            "QUIT" => {
                let _ = reply("221 2.0.0 Bye").await;
                return;
            }
            _ => "502 5.5.2 Command not recognized".to_owned(),
        };
        if reply(&answer).await.is_err() {
            return;
        }
    }
}
