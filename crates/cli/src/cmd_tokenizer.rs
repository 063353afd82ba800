//! `ferrolm tokenizer ...`: train, encode, decode and inspect byte-level BPE tokenizers. Thin: parse,
//! call `ferrolm_tokenizer`, print.

use anyhow::{bail, Context};
use ferrolm_tokenizer::{encode_file_to_npy_with, read_npy, train_tokenizer, Tokenizer, TrainOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Train a byte-level BPE tokenizer (GPT-2 pre-tokenization) on UTF-8 text files and write
    /// DIR/vocab.json + DIR/merges.txt (GPT-2 format) and DIR/tokenizer.json (Hugging Face format).
    Train(TrainArgs),
    /// Encode text: a file to a NumPy .npy token file (in parallel; `<u2` when the vocab fits in 16
    /// bits, else `<u4`), or a file / --text to ids on stdout.
    Encode(EncodeArgs),
    /// Decode ids from a .npy file or --ids to text on stdout.
    Decode(DecodeArgs),
    /// Show a tokenizer's size, special tokens and fingerprint, and how it splits a text.
    Info(InfoArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  ferrolm tokenizer train -i stories-train.txt --vocab-size 10000 -o tok/\n  \
                        ferrolm tokenizer encode -t tok/ -i stories-train.txt -o train.npy"
)]
pub struct TrainArgs {
    /// UTF-8 text files to train on (read memory-mapped).
    #[arg(long, short, num_args = 1.., required = true)]
    input: Vec<PathBuf>,
    /// Vocabulary size: 256 bytes + merges + special tokens.
    #[arg(long, default_value_t = 10_000)]
    vocab_size: usize,
    /// A special token (repeat for several); never split, never merged.
    #[arg(long = "special-token", default_values_t = [ferrolm_tokenizer::END_OF_TEXT.to_string()])]
    special_tokens: Vec<String>,
    /// Train without any special token (overrides --special-token).
    #[arg(long)]
    no_special_tokens: bool,
    /// Output directory (created if missing).
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ferrolm tokenizer encode -t tok/ -i train.txt -o train.npy   \
                        # prints bytes, tokens, bytes/token, MB/s\n  \
                        ferrolm tokenizer encode -t tok/ --text 'Once upon a time'"
)]
pub struct EncodeArgs {
    /// Tokenizer directory (tokenizer.json, or vocab.json + merges.txt).
    #[arg(long, short)]
    tokenizer: PathBuf,
    /// UTF-8 text file to encode.
    #[arg(long, short, conflicts_with = "text")]
    input: Option<PathBuf>,
    /// Text to encode (prints ids).
    #[arg(long)]
    text: Option<String>,
    /// Write ids to this .npy file instead of printing them (needs --input).
    #[arg(long, short, requires = "input")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    /// Tokenizer directory.
    #[arg(long, short)]
    tokenizer: PathBuf,
    /// A .npy token file.
    #[arg(long, short, conflicts_with = "ids")]
    input: Option<PathBuf>,
    /// Ids separated by spaces or commas, e.g. "15496 11 995".
    #[arg(long)]
    ids: Option<String>,
}

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Tokenizer directory.
    #[arg(long, short)]
    tokenizer: PathBuf,
    /// Show how this text is split into tokens.
    #[arg(long)]
    text: Option<String>,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(a) => train(a),
        Command::Encode(a) => encode(a),
        Command::Decode(a) => decode(a),
        Command::Info(a) => info(a),
    }
}

fn load(dir: &PathBuf) -> anyhow::Result<Tokenizer> {
    Tokenizer::from_dir(dir).with_context(|| format!("loading the tokenizer in {}", dir.display()))
}

fn train(a: TrainArgs) -> anyhow::Result<()> {
    let specials = if a.no_special_tokens {
        Vec::new()
    } else {
        a.special_tokens
    };
    let started = Instant::now();
    let options = TrainOptions {
        progress: std::io::stderr().is_terminal(),
    };
    let tokenizer = train_tokenizer(&a.input, a.vocab_size, &specials, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    tokenizer.save(&a.out)?;
    println!(
        "trained {} tokens ({} merges, {} special) in {seconds:.2} s; wrote {}/{{vocab.json,merges.txt,tokenizer.json}}",
        tokenizer.vocab_size(),
        tokenizer.num_merges(),
        tokenizer.special_tokens().len(),
        a.out.display()
    );
    println!("fingerprint {}", tokenizer.fingerprint());
    Ok(())
}

fn encode(a: EncodeArgs) -> anyhow::Result<()> {
    let tokenizer = load(&a.tokenizer)?;
    if let (Some(input), Some(output)) = (&a.input, &a.output) {
        let stats = encode_file_to_npy_with(&tokenizer, input, output, std::io::stderr().is_terminal())?;
        println!(
            "{} bytes -> {} tokens ({:.2} bytes/token) in {:.2} s, {:.1} MB/s, {} threads; wrote {} ({})",
            stats.bytes,
            stats.tokens,
            stats.compression(),
            stats.seconds,
            stats.mb_per_s(),
            rayon::current_num_threads(),
            output.display(),
            stats.dtype.descr()
        );
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut print = |id: u32, first: bool| -> std::io::Result<()> {
        if !first {
            out.write_all(b" ")?;
        }
        write!(out, "{id}")
    };
    match (&a.input, &a.text) {
        (Some(input), _) => {
            let file = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
            let reader = std::io::BufReader::new(file);
            for (i, id) in tokenizer.encode_iter_named(reader, input).enumerate() {
                print(id?, i == 0)?;
            }
        }
        (None, Some(text)) => {
            for (i, id) in tokenizer.encode(text).into_iter().enumerate() {
                print(id, i == 0)?;
            }
        }
        (None, None) => bail!("give --input FILE or --text TEXT"),
    }
    writeln!(out)?;
    Ok(())
}

fn decode(a: DecodeArgs) -> anyhow::Result<()> {
    let tokenizer = load(&a.tokenizer)?;
    let ids: Vec<u32> = match (&a.input, &a.ids) {
        (Some(input), _) => read_npy(input)?,
        (None, Some(ids)) => ids
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u32>()
                    .with_context(|| format!("{s:?} is not a token id"))
            })
            .collect::<anyhow::Result<_>>()?,
        (None, None) => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s.split_whitespace()
                .map(|t| {
                    t.parse::<u32>()
                        .with_context(|| format!("{t:?} is not a token id"))
                })
                .collect::<anyhow::Result<_>>()?
        }
    };
    let text = tokenizer.decode(&ids)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn info(a: InfoArgs) -> anyhow::Result<()> {
    let tokenizer = load(&a.tokenizer)?;
    println!("tokenizer    {}", a.tokenizer.display());
    println!("vocab size   {}", tokenizer.vocab_size());
    println!("merges       {}", tokenizer.num_merges());
    println!(
        "token dtype  {}",
        ferrolm_tokenizer::TokenDtype::for_vocab(tokenizer.vocab_size()).descr()
    );
    for (s, id) in tokenizer.special_tokens() {
        println!("special      {id:>6} {s:?}");
    }
    println!("fingerprint  {}", tokenizer.fingerprint());
    if let Some(text) = a.text {
        let ids = tokenizer.encode(&text);
        println!("{} bytes -> {} tokens", text.len(), ids.len());
        for id in ids {
            let bytes = tokenizer.id_to_bytes(id).unwrap_or_default();
            println!("  {id:>6} {:?}", String::from_utf8_lossy(bytes));
        }
    }
    Ok(())
}
