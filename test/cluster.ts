// The local cluster the tests run (real host processes; see host/cluster/local.ts).
export { LocalCluster as Cluster, eventually } from '../host/cluster/local.ts';
