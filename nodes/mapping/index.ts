export { type FakeWall, MapService, type PublishedTile } from './map-service.js';
export { gossipMessage, MapSync } from './map-sync.js';
export { assemble, type DenseMap, mapDigest, toOccupancyGrid, toPng } from './merged-map.js';
export { type MapFrame } from './occupancy-grid.js';
export { ScanMatchingLocalizer } from './scan-matcher.js';
