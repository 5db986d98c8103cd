// Graphile Worker, end to end, as the peer of steward's PostgreSQL store: JOBS jobs added
// in batches of 1,000 (addJobs), then run by one worker with CONCURRENCY concurrent jobs
// until all are done; prints jobs/s over the whole (add + run), as steward's bench does.
// Its defaults otherwise: each job is fetched and completed on its own (unbatched).
//
//   node bench/queue/graphile.mjs URL JOBS CONCURRENCY
// Needs: npm install --prefix bench/queue (bench/queue/run.py does it).
import { run, makeWorkerUtils } from "graphile-worker";

const [url, jobsArg, concArg] = process.argv.slice(2);
const jobs = Number(jobsArg), concurrency = Number(concArg);
const utils = await makeWorkerUtils({ connectionString: url });
await utils.migrate();

let done = 0, finish;
const allDone = new Promise((r) => (finish = r));
const start = process.hrtime.bigint();
for (let i = 0; i < jobs; i += 1000) {
  const specs = [];
  for (let j = i; j < Math.min(jobs, i + 1000); j++) {
    specs.push({ identifier: "bench", payload: { input: `/in/${j}` } });
  }
  await utils.addJobs(specs);
}
const runner = await run({
  connectionString: url,
  concurrency,
  // The same pool size as steward's store.
  maxPoolSize: Math.min(concurrency + 2, 16),
  noHandleSignals: true,
  pollInterval: 1000,
  logger: new (await import("graphile-worker")).Logger(() => () => {}),
  taskList: {
    bench: async () => {
      if (++done === jobs) finish();
    },
  },
});
await allDone;
const secs = Number(process.hrtime.bigint() - start) / 1e9;
await runner.stop();
await utils.release();
console.log((jobs / secs).toFixed(0));
