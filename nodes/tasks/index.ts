export { type BlobStore, FileBlobStore, MemoryBlobStore } from './blob-store.js';
export { lie } from './faults.js';
export { isDecided } from './policy.js';
export { TaskExecutor } from './task-executor.js';
export { type TaskOptions, type TaskOutcome, TaskRequester } from './task-requester.js';
