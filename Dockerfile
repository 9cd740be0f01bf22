# syntax=docker/dockerfile:1
# ssl3d images, one Dockerfile, two targets:
#   docker build --target runtime  -t ssl3d/runtime:0.1.0  .   # the `ssl3d` CLI with TensorFlow.js on CUDA (tfjs-node-gpu)
#   docker build --target operator -t ssl3d/operator:0.1.0 .   # the operator: one esbuild bundle on Node, no TensorFlow
# Stages: deps (npm ci from the lockfile, cached until package*.json change) -> build (tsc -> dist/, esbuild bundle
# of the operator) -> runtime-deps (production dependencies incl. tfjs-node-gpu) -> the two targets.
# Base images are pinned by exact tag (see docs/delivery.md to pin digests in your registry mirror).
# test/integration/delivery/dockerfile.test.ts lints this file (hadolint + project rules) and runs the RUN steps
# of the build and runtime stages in a clean folder without Docker; steps marked `# ci: skip <reason>` only make
# sense inside an image.

ARG NODE_IMAGE=node:22.23.3-bookworm-slim
# libtensorflow 2.9.1 (tfjs-node-gpu 4.22) is built against CUDA 11.2 and cuDNN 8.1.
ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04

FROM ${NODE_IMAGE} AS node

# ---- deps: all dependencies from the lockfile (dev included: typescript, esbuild via tsx) ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# The package's own `install` hook builds the optional native CPU kernels; not needed to compile TypeScript.
COPY native/build.mjs ./native/build.mjs
ENV SSL3D_NATIVE=0
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --omit=optional

# ---- build: compile the TypeScript sources to dist/ and bundle the operator into one file ----
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY bin/ ./bin/
COPY api/ ./api/
COPY runtime/ ./runtime/
COPY operator/ ./operator/
RUN npm run build
# hadolint ignore=DL3059
RUN node_modules/.bin/esbuild operator/src/main.ts --bundle --platform=node --format=esm --target=node22 \
      --outfile=dist/operator.mjs --sourcemap --legal-comments=none \
      --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);"

# ---- runtime-deps: production dependencies, with the optional GPU backend (libtensorflow 2.9.1 + CUDA) ----
FROM ${NODE_IMAGE} AS runtime-deps
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY package.json package-lock.json ./
# The native CPU kernel addon is not built for this image: it would be compiled against Debian's glibc, newer than
# the CUDA image's Ubuntu 20.04, and the GPU image computes with libtensorflow.
COPY native/build.mjs ./native/build.mjs
ENV SSL3D_NATIVE=0
# The optional dependency @tensorflow/tfjs-node-gpu downloads libtensorflow (GPU) in its install script.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund --omit=dev
# ci: skip libtensorflow cannot be downloaded on the CI machine (no network beyond package registries)
RUN find node_modules/@tensorflow/tfjs-node-gpu -name tfjs_binding.node | grep -q . \
    && find node_modules/@tensorflow/tfjs-node-gpu -name 'libtensorflow.so*' | grep -q . \
    && rm -rf node_modules/@tensorflow/tfjs-node

# ---- runtime: the ssl3d CLI on CUDA 11.2 + cuDNN 8 ----
FROM ${CUDA_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ssl3d runtime" \
      org.opencontainers.image.description="ssl3d CLI: preprocessing and pre-training with TensorFlow.js on CUDA (tfjs-node-gpu)" \
      org.opencontainers.image.licenses="Apache-2.0"
# ci: skip the image's Node binary, copied from the pinned Node image
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin/ ./bin/
ENV NODE_ENV=production \
    SSL3D_BACKEND=node-gpu \
    nnssl_raw=/data/raw \
    nnssl_preprocessed=/data/preprocessed \
    nnssl_results=/data/results
# ci: skip creates image paths outside the app folder
RUN node bin/ssl3d.mjs --version \
    && ln -s /app/bin/ssl3d.mjs /usr/local/bin/ssl3d \
    && mkdir -p /data && chown 65532:65532 /data
USER 65532:65532
ENTRYPOINT ["node", "/app/bin/ssl3d.mjs"]
CMD ["--help"]

# ---- operator: one bundled file on the slim Node image, no TensorFlow, no node_modules ----
FROM ${NODE_IMAGE} AS operator
LABEL org.opencontainers.image.title="ssl3d operator" \
      org.opencontainers.image.description="Kubernetes operator for ssl3d Collections, Plans and PretrainRuns" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
COPY --from=build /app/dist/operator.mjs /app/dist/operator.mjs.map ./
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["node", "/app/operator.mjs"]
