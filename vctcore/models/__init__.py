"""Generator networks built from MONAI blocks: stacked VQ-VAE image autoencoder, segmentation
autoencoder, attribute conditioning, latent diffusion U-Net and post-processing U-Net."""
