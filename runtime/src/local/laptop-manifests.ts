/**
 * The embedded default of `ssl3d run` (no -f): the manifests of examples/laptop.yaml, kept byte-identical by
 * runtime/src/local/manifests.test.ts, so `npm start` works from an image or a package without the examples folder.
 */
export const LAPTOP_MANIFESTS = `# ssl3d on a laptop: demo phantoms -> plan and preprocess -> a small MAE pre-training on CPU (a few minutes).
#   ssl3d run -f examples/laptop.yaml            # this file is also the embedded default of \`ssl3d run\`
#   ssl3d run -f examples/laptop.yaml --quick    # CI: fewer phantoms, 2 short epochs
# The same manifests apply to a cluster (kubectl apply -f); locally the images are ignored, each PVC is a folder
# under the state folder (default ./ssl3d-local/volumes/<claimName>, or --volume CLAIM=DIR), and the annotation
# ssl3d.io/local-demo makes the local runner generate the demo phantoms into the source first.
apiVersion: ssl3d.io/v1alpha1
kind: Collection
metadata:
  name: demo
  annotations:
    ssl3d.io/local-demo: "true"
spec:
  source:
    pvc: {claimName: ssl3d-raw}
  dataset: "990"
---
apiVersion: ssl3d.io/v1alpha1
kind: Plan
metadata:
  name: demo
spec:
  collectionRef: {name: demo}
  configurations: [onemmiso]
  numProcesses: 2
  preprocess:
    image: ssl3d/runtime:0.2.0
  output:
    pvc: {claimName: ssl3d-preprocessed}
---
apiVersion: ssl3d.io/v1alpha1
kind: PretrainRun
metadata:
  name: demo
spec:
  planRef: {name: demo}
  image: ssl3d/runtime:0.2.0
  training:
    trainer: BaseMAETrainer
    configuration: onemmiso
    epochs: 3
    args: [--arch-preset, resenc-xs, --patch-size, "32", --batch-size, "2", --iters-per-epoch, "25", --val-iters, "2", --seed, "1"]
  numNodes: 1
  nprocPerNode: 1
  storage:
    checkpoints: {claimName: ssl3d-results}
  runPolicy:
    maxRestarts: 2
    resume: Latest
  metrics:
    port: 9090
`;
