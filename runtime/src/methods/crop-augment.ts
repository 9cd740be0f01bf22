/** The per-crop augmentation of VoCo and SimCLR now lives in `data/contrastive-crops.ts` (it runs in the loader workers). */
export { defaultCropAugment } from "../data/contrastive-crops.js";
